//! Fakes of the chat robots on 127.0.0.1, each checking a request the way
//! its vendor documents it (path, body shape, signature and its one-hour
//! window) and answering the vendor's way: DingTalk, WeCom and Feishu with
//! HTTP 200 and an error code in the JSON, Slack with a status and a short
//! text. They count what they accepted and what they refused.
//!
//! The signatures are checked with their own code (hmac, sha2, base64,
//! straight from the vendors' recipes), not with the engine's.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{Received, read_request, respond};

/// Which vendor a fake plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Dingtalk,
    Wecom,
    Feishu,
    Slack,
}

/// A scripted answer, used before the fake's own checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Script {
    /// The vendor's own refusal: an error code (and its message).
    Refuse(i64, &'static str),
    /// Never answer.
    Hang,
}

/// One request and the fake's verdict on it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub request: Received,
    pub body: Value,
    /// None when accepted; the vendor's error otherwise.
    pub refused: Option<String>,
}

pub struct Robot {
    pub vendor: Vendor,
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Robot {
    /// Starts a fake of `vendor` that checks signatures with `secret`.
    pub fn start(vendor: Vendor, secret: Option<&str>, script: Vec<Script>) -> Robot {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let url = match vendor {
            Vendor::Dingtalk => format!("http://{addr}/robot/send?access_token=tok123"),
            Vendor::Wecom => format!("http://{addr}/cgi-bin/webhook/send?key=key123"),
            Vendor::Feishu => format!("http://{addr}/open-apis/bot/v2/hook/hook123"),
            Vendor::Slack => format!("http://{addr}/services/T000/B000/XXXX"),
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let secret = secret.map(str::to_string);
        let got = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (got, script, secret) = (got.clone(), script.clone(), secret.clone());
                std::thread::spawn(move || {
                    let Some(request) = read_request(&mut stream) else {
                        return;
                    };
                    let next = script.lock().unwrap().pop_front();
                    if next == Some(Script::Hang) {
                        got.lock().unwrap().push(Seen {
                            body: Value::Null,
                            request,
                            refused: Some("hung".into()),
                        });
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    }
                    let body: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
                    let verdict = match next {
                        Some(Script::Refuse(code, msg)) => Err((code, msg.to_string())),
                        _ => check(vendor, &request, &body, secret.as_deref()),
                    };
                    answer(vendor, &mut stream, &verdict);
                    got.lock().unwrap().push(Seen {
                        request,
                        body,
                        refused: verdict.err().map(|(c, m)| format!("{c}: {m}")),
                    });
                });
            }
        });
        Robot { vendor, url, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The bodies of the messages it accepted.
    pub fn accepted(&self) -> Vec<Value> {
        self.seen()
            .into_iter()
            .filter(|s| s.refused.is_none())
            .map(|s| s.body)
            .collect()
    }

    pub fn refused(&self) -> Vec<String> {
        self.seen().into_iter().filter_map(|s| s.refused).collect()
    }

    /// Waits until it accepted `n` messages (or panics after `limit`).
    pub fn wait_accepted(&self, n: usize, limit: Duration) -> Vec<Value> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let got = self.accepted();
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{:?} accepted {} of {n} messages in {limit:?}; seen: {:#?}",
                self.vendor,
                got.len(),
                self.seen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn answer(vendor: Vendor, stream: &mut std::net::TcpStream, verdict: &Result<(), (i64, String)>) {
    let json = "application/json";
    match (vendor, verdict) {
        (Vendor::Dingtalk | Vendor::Wecom, Ok(())) => {
            respond(stream, 200, json, r#"{"errcode":0,"errmsg":"ok"}"#)
        }
        (Vendor::Dingtalk | Vendor::Wecom, Err((code, msg))) => respond(
            stream,
            200,
            json,
            &serde_json::json!({"errcode": code, "errmsg": msg}).to_string(),
        ),
        (Vendor::Feishu, Ok(())) => respond(
            stream,
            200,
            json,
            r#"{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}"#,
        ),
        (Vendor::Feishu, Err((code, msg))) => respond(
            stream,
            200,
            json,
            &serde_json::json!({"code": code, "data": {}, "msg": msg}).to_string(),
        ),
        (Vendor::Slack, Ok(())) => respond(stream, 200, "text/html", "ok"),
        (Vendor::Slack, Err((code, msg))) => respond(stream, *code as u16, "text/html", msg),
    }
}

type Verdict = Result<(), (i64, String)>;

fn check(vendor: Vendor, r: &Received, body: &Value, secret: Option<&str>) -> Verdict {
    if r.method != "POST" {
        return Err((405, "method not allowed".into()));
    }
    if !r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return Err((40035, "content type must be application/json".into()));
    }
    match vendor {
        Vendor::Dingtalk => dingtalk(r, body, secret),
        Vendor::Wecom => wecom(r, body),
        Vendor::Feishu => feishu(body, secret),
        Vendor::Slack => slack(body),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Undoes percent-encoding (and `+` as space, as quote_plus writes it).
fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn query(path: &str) -> Vec<(String, String)> {
    path.split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), url_decode(v)))
                .collect()
        })
        .unwrap_or_default()
}

/// DingTalk: access_token; with a secret, timestamp (ms, within an hour) and
/// sign = base64(HmacSHA256(secret, timestamp + "\n" + secret)), URL-encoded.
fn dingtalk(r: &Received, body: &Value, secret: Option<&str>) -> Verdict {
    let q = query(&r.path);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if !r.path.starts_with("/robot/send") || get("access_token").as_deref() != Some("tok123") {
        return Err((300001, "token is not exist".into()));
    }
    if let Some(secret) = secret {
        let (Some(ts), Some(sign)) = (get("timestamp"), get("sign")) else {
            return Err((
                310000,
                "sign not match, more: missing timestamp or sign".into(),
            ));
        };
        let t: i64 = ts
            .parse()
            .map_err(|_| (310000, "bad timestamp".to_string()))?;
        if (now_ms() - t).abs() > 3_600_000 {
            return Err((310000, "timestamp is out of the one hour window".into()));
        }
        let want = hmac_b64(secret.as_bytes(), format!("{ts}\n{secret}").as_bytes());
        if sign != want {
            return Err((310000, "sign not match".into()));
        }
    }
    let ok = body["msgtype"] == "markdown"
        && body["markdown"]["title"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        && body["markdown"]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        && body["at"]["atMobiles"].is_array()
        && body["at"]["isAtAll"].is_boolean();
    if !ok {
        return Err((40035, format!("缺少参数 json: {body}")));
    }
    // A mentioned mobile rings only when the text holds "@<mobile>".
    for m in body["at"]["atMobiles"].as_array().unwrap() {
        let text = body["markdown"]["text"].as_str().unwrap();
        if !text.contains(&format!("@{}", m.as_str().unwrap_or(""))) {
            return Err((40035, format!("@{m} is not in the text")));
        }
    }
    Ok(())
}

/// WeCom: key; markdown with content ≤ 4096 bytes, or text with mentions.
fn wecom(r: &Received, body: &Value) -> Verdict {
    if !r.path.starts_with("/cgi-bin/webhook/send") || !r.path.contains("key=key123") {
        return Err((93000, "invalid webhook url".into()));
    }
    let ok = match body["msgtype"].as_str() {
        Some("markdown") => body["markdown"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty() && c.len() <= 4096),
        Some("text") => {
            body["text"]["content"]
                .as_str()
                .is_some_and(|c| c.len() <= 2048)
                && body["text"]["mentioned_mobile_list"].is_array()
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err((40008, format!("invalid message type: {body}")))
    }
}

/// Feishu: timestamp (s, a string) and sign =
/// base64(HmacSHA256(key = timestamp + "\n" + secret, message = "")) in the
/// body; an interactive card with a header title and elements.
fn feishu(body: &Value, secret: Option<&str>) -> Verdict {
    if let Some(secret) = secret {
        let (Some(ts), Some(sign)) = (body["timestamp"].as_str(), body["sign"].as_str()) else {
            return Err((
                19021,
                "sign match fail or timestamp is not within one hour from current time".into(),
            ));
        };
        let t: i64 = ts
            .parse()
            .map_err(|_| (19021, "bad timestamp".to_string()))?;
        if (now_ms() / 1000 - t).abs() > 3600 {
            return Err((
                19021,
                "timestamp is not within one hour from current time".into(),
            ));
        }
        let want = hmac_b64(format!("{ts}\n{secret}").as_bytes(), b"");
        if sign != want {
            return Err((
                19021,
                "sign match fail or timestamp is not within one hour from current time".into(),
            ));
        }
    }
    let ok = body["msg_type"] == "interactive"
        && body["card"]["header"]["title"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        && body["card"]["elements"]
            .as_array()
            .is_some_and(|e| !e.is_empty() && e.iter().all(|x| x["tag"].is_string()));
    if ok {
        Ok(())
    } else {
        Err((9499, format!("Bad Request: {body}")))
    }
}

/// Slack: text, and blocks of sections whose mrkdwn text is ≤ 3000 characters.
fn slack(body: &Value) -> Verdict {
    let ok = body["text"].as_str().is_some_and(|t| !t.is_empty())
        && body["blocks"].as_array().is_some_and(|b| {
            !b.is_empty()
                && b.len() <= 50
                && b.iter().all(|x| {
                    x["type"] == "section"
                        && x["text"]["type"] == "mrkdwn"
                        && x["text"]["text"]
                            .as_str()
                            .is_some_and(|t| t.chars().count() <= 3000)
                })
        });
    if ok {
        Ok(())
    } else {
        Err((400, "invalid_blocks".into()))
    }
}
