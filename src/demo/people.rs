//! The people of the demo (the `owners` entity): the sales reps of each leaf team, a lead for
//! headquarters and each region, who held which seat when, and the owner a record names.
//!
//! A leaf team has a fixed number of seats (its sales headcount); seat 1 is the team lead's.
//! The first people of a team's roster hold the seats from the start; each change in the roster
//! hands one seat from its holder (who leaves: `active = false`) to the next person on the list
//! (who joins). A record names the person holding the drawn seat at the record's time, so nobody
//! owns a record from before they joined or after they left. Strong teams keep their people,
//! weak ones lose more of them.

use super::RecordSink;
use super::clock::{Clock, DAY};
use super::teams::PROFILES;
use super::world::text;
use crate::period::Millis;
use crate::store::Value;

/// A person: their name and the local part of their e-mail address.
type Person = (&'static str, &'static str);

/// The people of one team. The first `people.len() - changes.len()` of them hold the team's
/// seats from the start (in seat order); the change number k hands its seat to the person after
/// those, number k.
struct Roster {
    team: &'static str,
    people: &'static [Person],
    /// (seat, starting at 1; quarter index, 0 = the oldest; days into the quarter). Changes of
    /// one seat are in time order.
    changes: &'static [(usize, usize, i64)],
}

/// Everybody, headquarters and regions first, then the leaf teams in the order of PROFILES.
const ROSTERS: [Roster; 10] = [
    roster("hq", &[("顾建华", "gu.jianhua")], &[]),
    roster("east", &[("方志刚", "fang.zhigang")], &[]),
    roster("north", &[("白雪梅", "bai.xuemei")], &[]),
    roster("south", &[("龙海", "long.hai")], &[]),
    roster(
        "shanghai",
        &[
            ("陈静", "chen.jing"),
            ("王磊", "wang.lei"),
            ("李娜", "li.na"),
            ("张伟", "zhang.wei"),
            ("刘洋", "liu.yang"),
            ("周敏", "zhou.min"),
            ("吴涛", "wu.tao"),
            ("徐丽", "xu.li"),
        ],
        &[],
    ),
    roster(
        "shenzhen",
        &[
            ("林峰", "lin.feng"),
            ("黄婷", "huang.ting"),
            ("郑凯", "zheng.kai"),
            ("何雪", "he.xue"),
            ("罗军", "luo.jun"),
            ("梁慧", "liang.hui"),
            ("谢斌", "xie.bin"),
            ("邓佳", "deng.jia"),
        ],
        &[(4, 5, 20)],
    ),
    roster(
        "beijing",
        &[
            ("赵鹏", "zhao.peng"),
            ("孙悦", "sun.yue"),
            ("马超", "ma.chao"),
            ("朱琳", "zhu.lin"),
            ("胡志强", "hu.zhiqiang"),
            ("郭静", "guo.jing"),
            ("高翔", "gao.xiang"),
            ("宋雨", "song.yu"),
        ],
        &[(6, 3, 45)],
    ),
    roster(
        "hangzhou",
        &[
            ("钱程", "qian.cheng"),
            ("沈燕", "shen.yan"),
            ("韩冰", "han.bing"),
            ("杨帆", "yang.fan"),
            ("冯磊", "feng.lei"),
            ("曹颖", "cao.ying"),
            ("彭博", "peng.bo"),
        ],
        &[(2, 2, 10), (5, 6, 30)],
    ),
    roster(
        "guangzhou",
        &[
            ("叶青", "ye.qing"),
            ("蔡明", "cai.ming"),
            ("邱红", "qiu.hong"),
            ("潘宇", "pan.yu"),
            ("杜娟", "du.juan"),
            ("苏强", "su.qiang"),
            ("范文", "fan.wen"),
            ("钟琪", "zhong.qi"),
        ],
        &[(3, 1, 60), (1, 4, 15)],
    ),
    roster(
        "tianjin",
        &[
            ("任杰", "ren.jie"),
            ("袁芳", "yuan.fang"),
            ("蒋浩", "jiang.hao"),
            ("魏敏", "wei.min"),
            ("崔鹏", "cui.peng"),
            ("田甜", "tian.tian"),
            ("姚远", "yao.yuan"),
            ("石磊", "shi.lei"),
        ],
        &[(2, 1, 30), (4, 3, 70), (2, 6, 5)],
    ),
];

/// Where the e-mail addresses are.
const MAIL_DOMAIN: &str = "example.com";

const fn roster(
    team: &'static str,
    people: &'static [Person],
    changes: &'static [(usize, usize, i64)],
) -> Roster {
    Roster {
        team,
        people,
        changes,
    }
}

/// When one person of a roster held which seat (index from 0): [from, to), `None` meaning
/// before the demo began or still there.
#[derive(Debug, Clone, Copy)]
struct Tenure {
    seat: usize,
    from: Option<Millis>,
    to: Option<Millis>,
}

impl Roster {
    fn seats(&self) -> usize {
        self.people.len() - self.changes.len()
    }

    /// Every person's tenure, in roster order.
    fn tenures(&self, clock: &Clock) -> Vec<Tenure> {
        let mut out: Vec<Tenure> = (0..self.seats())
            .map(|seat| Tenure {
                seat,
                from: None,
                to: None,
            })
            .collect();
        let mut holder: Vec<usize> = (0..self.seats()).collect();
        for &(seat, quarter, day) in self.changes {
            let at = clock.quarters[quarter].span.start + day * DAY;
            out[holder[seat - 1]].to = Some(at);
            holder[seat - 1] = out.len();
            out.push(Tenure {
                seat: seat - 1,
                from: Some(at),
                to: None,
            });
        }
        out
    }

    /// The owner id of the roster's person number `index + 1`.
    fn id(&self, index: usize) -> String {
        format!("u-{}-{:02}", self.team, index + 1)
    }
}

/// Who holds which seat of each leaf team, over time.
pub(super) struct People {
    /// Per leaf team (as in PROFILES), per seat: (since, owner id), in time order; the first
    /// holder's `since` is `Millis::MIN`.
    seats: Vec<Vec<Vec<(Millis, Value)>>>,
}

impl People {
    pub(super) fn new(clock: &Clock) -> People {
        let seats = PROFILES
            .iter()
            .map(|p| {
                let r = leaf_roster(p.team);
                let mut seats = vec![Vec::new(); r.seats()];
                for (i, t) in r.tenures(clock).iter().enumerate() {
                    seats[t.seat].push((t.from.unwrap_or(Millis::MIN), Value::Text(r.id(i))));
                }
                seats
            })
            .collect();
        People { seats }
    }

    /// How many seats leaf team `team` has.
    pub(super) fn seats(&self, team: usize) -> usize {
        self.seats[team].len()
    }

    /// The owner id of whoever held seat `seat` (from 0) of leaf team `team` at `t`.
    pub(super) fn holder(&self, team: usize, seat: usize, t: Millis) -> Value {
        let holders = &self.seats[team][seat];
        let i = holders.partition_point(|(since, _)| *since <= t);
        holders[i.max(1) - 1].1.clone()
    }
}

fn leaf_roster(team: &str) -> &'static Roster {
    ROSTERS
        .iter()
        .find(|r| r.team == team)
        .expect("every leaf team has a roster")
}

/// One person and when they were there.
pub(super) struct Member {
    pub(super) id: String,
    pub(super) team: &'static str,
    name: &'static str,
    mail: &'static str,
    /// (joined, left): `None` for joining before the demo's first quarter, and for not having
    /// left before `until`.
    pub(super) tenure: (Option<Millis>, Option<Millis>),
}

/// Everybody who joined before `until`, in roster order.
pub(super) fn members(clock: &Clock) -> Vec<Member> {
    let mut out = Vec::new();
    for r in &ROSTERS {
        for (i, t) in r.tenures(clock).iter().enumerate() {
            if t.from.is_some_and(|from| from >= clock.until) {
                continue;
            }
            let (name, mail) = r.people[i];
            out.push(Member {
                id: r.id(i),
                team: r.team,
                name,
                mail,
                tenure: (t.from, t.to.filter(|&to| to < clock.until)),
            });
        }
    }
    out
}

/// Writes everybody who joined before `until`; who left before it is not active.
pub(super) fn write_owners<S: RecordSink>(clock: &Clock, sink: &mut S) -> Result<u64, S::Error> {
    let members = members(clock);
    for m in &members {
        sink.write(
            "owners",
            &[
                ("id", Value::Text(m.id.clone())),
                ("name", text(m.name)),
                ("team", text(m.team)),
                ("email", Value::Text(format!("{}@{MAIL_DOMAIN}", m.mail))),
                ("active", Value::Bool(m.tenure.1.is_none())),
            ],
        )?;
    }
    Ok(members.len() as u64)
}
