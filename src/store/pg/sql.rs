//! Every SQL text the PostgreSQL store sends, in one place.
//!
//! Identifiers come only from the checked schema (entity and field names
//! that passed `schema::is_identifier`, looked up here again before use) or
//! are constants; every value is a bound parameter. The pushdown
//! ([`compile`]) turns one query shape into one statement that PostgreSQL
//! answers for every team × period at once:
//!
//! - periods are a bound bucket table `p(idx, lo0, hi0, lo1, hi1, …)`, one
//!   [lo, hi) pair per time filter anywhere in the query (semi-joins included);
//! - the team tree is a closure table `c(team, slot)` bound as two arrays:
//!   each team id with itself and every ancestor, so joining a record to it
//!   counts the record for its whole ancestry (distinct counts per ancestor
//!   included, never a mean of means);
//! - people are `o(id, slot)`, reached through `owner_field` or `owner_via`;
//! - `one_of(field, query, of)` is an `EXISTS` semi-join on the same period
//!   bucket and the same slot.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::types::ToSql;

use crate::period::{Calendar, PeriodId};
use crate::query::{Agg, CmpOp, Filter, Query, QueryError, Scalar};
use crate::store::schema::{Entity, Field, FieldType, OwnerLink, Schema};
use crate::store::{Owners, TeamTree};

/// A bound parameter.
pub type Param = Box<dyn ToSql + Sync + Send>;

/// A statement and its parameters.
pub struct Statement {
    pub text: String,
    pub params: Vec<Param>,
}

impl Statement {
    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| &**p as &(dyn ToSql + Sync))
            .collect()
    }
}

/// `"name"` for an identifier of the checked schema.
fn ident(name: &str) -> String {
    debug_assert!(crate::store::schema::is_identifier(name));
    format!("\"{name}\"")
}

/// `"PREFIXname"`: a name the engine derives from a schema identifier.
fn derived(prefix: &str, name: &str) -> String {
    debug_assert!(crate::store::schema::is_identifier(name));
    format!("\"{prefix}{name}\"")
}

/// A UTC millisecond instant as a timestamptz parameter.
pub fn instant(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// The PostgreSQL column type of a field type.
pub fn column_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Text => "text",
        FieldType::Integer => "bigint",
        FieldType::Real => "double precision",
        FieldType::Bool => "boolean",
        FieldType::Time => "timestamptz",
    }
}

// ---------------------------------------------------------------- schema

/// Said first on every connection: PostgreSQL's notices ("relation … already
/// exists, skipping" of every `CREATE … IF NOT EXISTS`) are not logged.
pub const QUIET: &str = "SET client_min_messages TO warning";

/// The engine's bookkeeping tables, made when missing.
pub const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS _kpi_fields (
        entity text NOT NULL, field text NOT NULL, type text NOT NULL, optional boolean NOT NULL,
        seq bigserial, PRIMARY KEY (entity, field));
     CREATE TABLE IF NOT EXISTS _kpi_data (entity text PRIMARY KEY, generation bigint NOT NULL);
     CREATE TABLE IF NOT EXISTS _kpi_meta (key text PRIMARY KEY, value text NOT NULL);";

/// A private schema, made the connection's only one (a `kpi test` case).
pub fn create_scratch(name: &str) -> String {
    format!("CREATE SCHEMA {0}; SET search_path TO {0}", ident(name))
}

pub fn drop_scratch(name: &str) -> String {
    format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(name))
}

/// Serialises schema changes and imports across processes (inside a transaction).
pub const WRITE_LOCK: &str = "SELECT pg_advisory_xact_lock(7340115201)";
/// The alert scheduler's lease (`lease`): session-level, so it lasts as long as its connection.
pub const TRY_SCHEDULER_LOCK: &str = "SELECT pg_try_advisory_lock(7340115202)";
/// Taken by every alert evaluation's transaction: two evaluators (a server's
/// scheduler, `kpi alerts`) apply their transitions one after the other.
pub const ALERTS_LOCK: &str = "SELECT pg_advisory_xact_lock(7340115203)";

pub const STORED_FIELDS: &str =
    "SELECT entity, field, type, optional FROM _kpi_fields ORDER BY seq";

pub const RECORD_FIELD: &str = "INSERT INTO _kpi_fields (entity, field, type, optional)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (entity, field) DO UPDATE SET type = excluded.type, optional = excluded.optional";

pub const FORGET_FIELD: &str = "DELETE FROM _kpi_fields WHERE entity = $1 AND field = $2";
pub const FORGET_ENTITY: &str = "DELETE FROM _kpi_fields WHERE entity = $1";

pub const BUMP_GENERATION: &str = "INSERT INTO _kpi_data (entity, generation) VALUES ($1, 1)
     ON CONFLICT (entity) DO UPDATE SET generation = _kpi_data.generation + 1";
pub const GENERATIONS: &str = "SELECT entity, generation FROM _kpi_data";

pub const SET_META: &str = "INSERT INTO _kpi_meta (key, value) VALUES ($1, $2)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";
pub const GET_META: &str = "SELECT value FROM _kpi_meta WHERE key = $1";

pub fn has_rows(entity: &Entity) -> String {
    format!("SELECT EXISTS (SELECT 1 FROM {})", ident(&entity.name))
}

/// Fresh planner statistics of an entity's table.
pub fn analyze(entity: &Entity) -> String {
    format!("ANALYZE {}", ident(&entity.name))
}

/// How many records an entity holds.
pub fn count_rows(entity: &Entity) -> String {
    format!("SELECT count(*)::int8 FROM {}", ident(&entity.name))
}

/// `has_rows` for an entity the schema no longer names (it was recorded in `_kpi_fields`).
pub fn has_rows_of(entity: &str) -> Option<String> {
    crate::store::schema::is_identifier(entity)
        .then(|| format!("SELECT EXISTS (SELECT 1 FROM {})", ident(entity)))
}

/// Whether `field` of `entity` holds a NULL (`null`) or a value (`!null`).
pub fn field_has(entity: &str, field: &str, null: bool) -> Option<String> {
    let ok =
        crate::store::schema::is_identifier(entity) && crate::store::schema::is_identifier(field);
    ok.then(|| {
        format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE {} IS {}NULL)",
            ident(entity),
            ident(field),
            if null { "" } else { "NOT " }
        )
    })
}

pub fn create_entity(entity: &Entity) -> String {
    let columns: Vec<String> = entity
        .fields
        .iter()
        .map(|f| match f.name.as_str() {
            "id" => "\"id\" text PRIMARY KEY".to_string(),
            _ => format!("{} {}", ident(&f.name), column_type(f.ty)),
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        ident(&entity.name),
        columns.join(", ")
    )
}

pub fn add_field(entity: &Entity, field: &Field) -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN {} {}",
        ident(&entity.name),
        ident(&field.name),
        column_type(field.ty)
    )
}

pub fn drop_field(entity: &str, field: &str) -> String {
    format!(
        "ALTER TABLE {} DROP COLUMN IF EXISTS {}",
        ident(entity),
        ident(field)
    )
}

pub fn drop_entity(entity: &str) -> String {
    format!("DROP TABLE IF EXISTS {}", ident(entity))
}

/// Indexes on the team field and every time field.
pub fn create_indexes(entity: &Entity) -> Vec<String> {
    entity
        .fields
        .iter()
        .filter(|f| {
            f.ty == FieldType::Time || Some(f.name.as_str()) == entity.team_field.as_deref()
        })
        .map(|f| {
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                derived(&format!("idx_{}_", entity.name), &f.name),
                ident(&entity.name),
                ident(&f.name)
            )
        })
        .collect()
}

// ---------------------------------------------------------------- writing

fn column_list(entity: &Entity) -> String {
    entity
        .fields
        .iter()
        .map(|f| ident(&f.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The staging table one import's rows are copied into (dropped at commit).
pub fn create_stage(entity: &Entity) -> String {
    format!(
        "CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
        stage_name(entity),
        ident(&entity.name)
    )
}

fn stage_name(entity: &Entity) -> String {
    derived("_kpi_stage_", &entity.name)
}

/// COPY into the staging table, text format, columns in schema order.
pub fn copy_in(entity: &Entity) -> String {
    format!(
        "COPY {} ({}) FROM STDIN",
        stage_name(entity),
        column_list(entity)
    )
}

/// Upserts the staged rows by id.
pub fn upsert_staged(entity: &Entity) -> String {
    let cols = column_list(entity);
    let updates: Vec<String> = entity
        .fields
        .iter()
        .skip(1)
        .map(|f| format!("{0} = excluded.{0}", ident(&f.name)))
        .collect();
    let set = if updates.is_empty() {
        "\"id\" = excluded.\"id\"".to_string()
    } else {
        updates.join(", ")
    };
    format!(
        "INSERT INTO {} ({cols}) SELECT {cols} FROM {} ON CONFLICT (\"id\") DO UPDATE SET {set}",
        ident(&entity.name),
        stage_name(entity)
    )
}

pub fn truncate(entity: &Entity) -> String {
    format!("TRUNCATE {}", ident(&entity.name))
}

/// Every row of an entity in schema order, times as UTC ms, bools as 0/1 (for staging).
pub fn select_all(entity: &Entity) -> String {
    let cols: Vec<String> = entity
        .fields
        .iter()
        .map(|f| match f.ty {
            FieldType::Time => format!("(extract(epoch from {0}) * 1000)::int8", ident(&f.name)),
            FieldType::Bool => format!("{}::int::int8", ident(&f.name)),
            _ => ident(&f.name),
        })
        .collect();
    format!("SELECT {} FROM {}", cols.join(", "), ident(&entity.name))
}

/// The same rows read back from a SQLite staging database, in schema order.
pub fn sqlite_select_all(entity: &Entity) -> String {
    format!(
        "SELECT {} FROM {}",
        column_list(entity),
        ident(&entity.name)
    )
}

/// Inserts one row into a SQLite staging table.
pub fn sqlite_insert(entity: &Entity) -> String {
    let marks: Vec<String> = (1..=entity.fields.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT OR REPLACE INTO {} ({}) VALUES ({})",
        ident(&entity.name),
        column_list(entity),
        marks.join(", ")
    )
}

/// The team tree.
pub fn select_teams(teams: &Entity) -> String {
    let col = |f: &str| {
        if teams.field(f).is_some() {
            ident(f)
        } else {
            "NULL::text".to_string()
        }
    };
    format!(
        "SELECT \"id\", {}, {} FROM {}",
        col("name"),
        col("parent"),
        ident(&teams.name)
    )
}

/// The people: id, name, team, active.
pub fn select_owners(owners: &Entity) -> String {
    let col = |f: &str, ty: &str| {
        if owners.field(f).is_some() {
            ident(f)
        } else {
            format!("NULL::{ty}")
        }
    };
    format!(
        "SELECT \"id\", {}, {}, {} FROM {}",
        col("name", "text"),
        col("team", "text"),
        col("active", "boolean"),
        ident(&owners.name)
    )
}

// ---------------------------------------------------------------- pushdown

/// How the rows of a compiled shape come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// (idx, slot, n, sum, min, max): count(*) or the count of non-null inputs.
    Num,
    /// (idx, slot, count)
    Count,
    /// (idx, slot, key, rows)
    Keys(KeyKind),
}

/// How a key column is read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Text,
    /// integer, bool (0/1) and time (UTC ms), as int8.
    Int,
    Real,
}

/// Everything a shape needs bound: the periods, the tree, the people.
pub struct Context<'a> {
    pub schema: &'a Schema,
    pub periods: &'a [PeriodId],
    pub cal: &'a Calendar,
    pub tree: &'a TeamTree,
    pub owners: &'a Owners,
}

/// One statement for `query` + `agg` over every team (or person) × period.
pub fn compile(
    cx: &Context<'_>,
    query: &Query,
    agg: &Agg,
) -> Result<(Statement, Output), QueryError> {
    let mut b = Builder::new(cx);
    let entity = cx.schema.require(&query.entity)?;
    let node = b.node(query, None)?;
    let (select, mut output, key_group) = b.aggregate(entity, &node.alias, agg)?;
    let mut conditions = node.conditions.clone();
    conditions.extend(agg_conditions(entity, &node.alias, agg)?);
    let mut body = format!(
        "SELECT p.idx, {} AS slot{select} FROM {} CROSS JOIN p{} WHERE {} GROUP BY 1, 2{}",
        node.slot,
        node.from,
        node.joins,
        and(&conditions),
        if key_group { ", 3" } else { "" }
    );
    if let Agg::CountDistinctAtLeast(_, n) = agg {
        let n = b.bind(f64::from(*n));
        body = format!(
            "SELECT idx, slot, (count(*) FILTER (WHERE n_rows >= {n}))::float8 FROM ({body}) k GROUP BY 1, 2"
        );
        output = Output::Count;
    }
    let text = b.with_clause() + body.as_str();
    Ok((
        Statement {
            text,
            params: b.params,
        },
        output,
    ))
}

/// The records behind one answer: the rows `query` + `agg` counts for one
/// slot (a team with its subtree, or a person) in the one period of `cx`,
/// the same filters as [`compile`]. Each row holds `fields` (times as UTC
/// ms, bools as 0/1), then how many rows match in all; at most `limit` rows
/// come back, ordered by id (PostgreSQL keeps no insertion order).
pub fn compile_records(
    cx: &Context<'_>,
    query: &Query,
    agg: &Agg,
    slot: u32,
    fields: &[&Field],
    limit: usize,
) -> Result<Statement, QueryError> {
    let mut b = Builder::new(cx);
    let entity = cx.schema.require(&query.entity)?;
    let node = b.node(query, None)?;
    let mut conditions = node.conditions.clone();
    conditions.extend(agg_conditions(entity, &node.alias, agg)?);
    if !query.all_teams {
        let s = b.bind(i32::try_from(slot).unwrap_or(i32::MAX));
        conditions.push(format!("{} = {s}", node.slot));
    }
    let columns: Vec<String> = fields.iter().map(|f| read_back(f, &node.alias)).collect();
    // One row at least, so that the total comes back even for an empty page.
    let limit = b.bind(limit.max(1) as i64);
    let body = format!(
        "SELECT {}, count(*) OVER ()::int8 FROM {} CROSS JOIN p{} WHERE {} ORDER BY {}.\"id\" COLLATE \"C\" LIMIT {limit}",
        columns.join(", "),
        node.from,
        node.joins,
        and(&conditions),
        node.alias
    );
    Ok(Statement {
        text: b.with_clause() + body.as_str(),
        params: b.params,
    })
}

/// A field as [`compile_records`] reads it back: times as UTC ms, bools as 0/1.
fn read_back(fd: &Field, alias: &str) -> String {
    let col = format!("{alias}.{}", ident(&fd.name));
    match fd.ty {
        FieldType::Time => format!("(extract(epoch from {col}) * 1000)::int8"),
        FieldType::Bool => format!("{col}::int::int8"),
        FieldType::Integer | FieldType::Real | FieldType::Text => col,
    }
}

/// One query of the shape (the outer one, or a semi-join's).
struct Node {
    alias: String,
    from: String,
    joins: String,
    /// The slot this node's rows are counted under.
    slot: String,
    conditions: Vec<String>,
}

struct Builder<'a> {
    cx: &'a Context<'a>,
    params: Vec<Param>,
    /// Per time filter: (lo, hi) ms per period (lo None = unbounded).
    bounds: Vec<Vec<(Option<i64>, i64)>>,
    aliases: usize,
    uses_closure: bool,
    uses_owners: bool,
}

impl<'a> Builder<'a> {
    fn new(cx: &'a Context<'a>) -> Builder<'a> {
        Builder {
            cx,
            params: Vec::new(),
            bounds: Vec::new(),
            aliases: 0,
            uses_closure: false,
            uses_owners: false,
        }
    }

    fn bind<T: ToSql + Sync + Send + 'static>(&mut self, v: T) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    /// The bucket table, the closure table and the people, as bound arrays.
    fn with_clause(&mut self) -> String {
        let idx: Vec<i32> = (0..self.cx.periods.len() as i32).collect();
        let mut cols = vec![self.bind(idx) + "::int4[]"];
        let mut names = vec!["idx".to_string()];
        for (k, b) in self.bounds.clone().into_iter().enumerate() {
            let lo: Vec<Option<SystemTime>> = b.iter().map(|x| x.0.map(instant)).collect();
            let hi: Vec<SystemTime> = b.iter().map(|x| instant(x.1)).collect();
            cols.push(self.bind(lo) + "::timestamptz[]");
            cols.push(self.bind(hi) + "::timestamptz[]");
            names.push(format!("lo{k}"));
            names.push(format!("hi{k}"));
        }
        let mut out = format!(
            "WITH p AS (SELECT * FROM unnest({}) AS p({}))",
            cols.join(", "),
            names.join(", ")
        );
        if self.uses_closure {
            let tree = self.cx.tree;
            let (mut teams, mut slots) = (Vec::new(), Vec::new());
            for (t, up) in tree.up.iter().enumerate() {
                for a in up {
                    teams.push(tree.ids[t].clone());
                    slots.push(*a as i32);
                }
            }
            let (t, s) = (self.bind(teams), self.bind(slots));
            out.push_str(&format!(
                ", c AS (SELECT * FROM unnest({t}::text[], {s}::int4[]) AS c(team, slot))"
            ));
        }
        if self.uses_owners {
            let ids = self.cx.owners.ids.clone();
            let slots: Vec<i32> = (0..ids.len() as i32).collect();
            let (i, s) = (self.bind(ids), self.bind(slots));
            out.push_str(&format!(
                ", o AS (SELECT * FROM unnest({i}::text[], {s}::int4[]) AS o(id, slot))"
            ));
        }
        out.push(' ');
        out
    }

    /// The FROM, joins and conditions of `query`. `outer_slot` is the slot a
    /// semi-join must match (None for the outer query).
    fn node(&mut self, query: &Query, outer_slot: Option<&str>) -> Result<Node, QueryError> {
        let entity = self.cx.schema.require(&query.entity)?;
        let alias = self.alias("r");
        let from = format!("{} {alias}", ident(&entity.name));
        let mut joins = String::new();
        let mut conditions = Vec::new();
        let by_owner = query.by_owner && !query.all_teams;
        let slot = if query.all_teams {
            "0".to_string()
        } else if by_owner {
            self.uses_owners = true;
            let o = self.alias("o");
            match self.owner_key(entity, &alias, &mut joins)? {
                Some(key) => {
                    joins.push_str(&format!(" JOIN o {o} ON {o}.id = {key}"));
                }
                None => conditions.push("FALSE".to_string()),
            }
            format!("{o}.slot")
        } else {
            self.uses_closure = true;
            let c = self.alias("c");
            match entity.team_column() {
                Some(team) => joins.push_str(&format!(
                    " JOIN c {c} ON {c}.team = {alias}.{}",
                    ident(team)
                )),
                None => conditions.push("FALSE".to_string()),
            }
            format!("{c}.slot")
        };
        if let Some(outer) = outer_slot
            && !query.all_teams
        {
            conditions.push(format!("{slot} = {outer}"));
        }
        for f in &query.filters {
            let c = self.filter(entity, &alias, f, &slot, query.all_teams)?;
            conditions.push(c);
        }
        Ok(Node {
            alias,
            from,
            joins,
            slot,
            conditions,
        })
    }

    /// The expression holding the owner id of a row (joining linked records for owner_via).
    fn owner_key(
        &mut self,
        entity: &Entity,
        alias: &str,
        joins: &mut String,
    ) -> Result<Option<String>, QueryError> {
        let (mut ent, mut at) = (entity, alias.to_string());
        // A chain of owner_via links ends at an owner_field (bounded by the schema's size).
        for _ in 0..=self.cx.schema.entities.len() {
            match &ent.owner {
                None => return Ok(None),
                Some(OwnerLink::Field(f)) => {
                    field(ent, f)?;
                    return Ok(Some(format!("{at}.{}", ident(f))));
                }
                Some(OwnerLink::Via {
                    field: f,
                    entity: e,
                }) => {
                    field(ent, f)?;
                    let linked = self.cx.schema.require(e)?;
                    let l = self.alias("l");
                    joins.push_str(&format!(
                        " JOIN {} {l} ON {l}.\"id\" = {at}.{}",
                        ident(&linked.name),
                        ident(f)
                    ));
                    (ent, at) = (linked, l);
                }
            }
        }
        Ok(None)
    }

    fn filter(
        &mut self,
        entity: &Entity,
        alias: &str,
        f: &Filter,
        slot: &str,
        all_teams: bool,
    ) -> Result<String, QueryError> {
        Ok(match f {
            Filter::Cmp {
                field: name,
                op,
                value,
            } => {
                let fd = field(entity, name)?;
                self.compare(fd, alias, *op, std::slice::from_ref(value))
            }
            Filter::OneOf {
                field: name,
                values,
            } => {
                let fd = field(entity, name)?;
                self.compare(fd, alias, CmpOp::Eq, values)
            }
            Filter::Null {
                field: name,
                is_null,
            } => {
                let fd = field(entity, name)?;
                format!(
                    "{alias}.{} IS {}NULL",
                    ident(&fd.name),
                    if *is_null { "" } else { "NOT " }
                )
            }
            Filter::InPeriod {
                field: name,
                period,
                cut,
            } => {
                let fd = field(entity, name)?;
                let cal = self.cx.cal;
                let b = self
                    .cx
                    .periods
                    .iter()
                    .map(|p| {
                        let r = cal.period(period.resolve(*p));
                        let end = cut.map_or(r.end, |len| r.end.min(r.start + len.max(0)));
                        (Some(r.start), end)
                    })
                    .collect();
                self.bounded(fd, alias, b)
            }
            Filter::BeforeStart { field: name } | Filter::BeforeEnd { field: name } => {
                let fd = field(entity, name)?;
                let start = matches!(f, Filter::BeforeStart { .. });
                let cal = self.cx.cal;
                let b = self
                    .cx
                    .periods
                    .iter()
                    .map(|p| {
                        let r = cal.period(*p);
                        (None, if start { r.start } else { r.end })
                    })
                    .collect();
                self.bounded(fd, alias, b)
            }
            Filter::InQuery {
                field: name,
                query,
                of,
            } => {
                let outer = field(entity, name)?;
                let inner_entity = self.cx.schema.require(&query.entity)?;
                let inner = field(inner_entity, of)?;
                let (a, b) = join_keys(outer, inner).ok_or_else(|| QueryError::JoinTypes {
                    field: name.to_string(),
                    of: of.to_string(),
                })?;
                let outer_slot = if all_teams { "0" } else { slot };
                let sub = self.node(query, Some(outer_slot))?;
                let mut conds = sub.conditions;
                conds.push(format!(
                    "{} = {}",
                    b.replace("{}", &format!("{}.{}", sub.alias, ident(&inner.name))),
                    a.replace("{}", &format!("{alias}.{}", ident(&outer.name)))
                ));
                format!(
                    "EXISTS (SELECT 1 FROM {}{} WHERE {})",
                    sub.from,
                    sub.joins,
                    and(&conds)
                )
            }
        })
    }

    /// A time filter: its [lo, hi) per period become bucket columns.
    fn bounded(&mut self, fd: &Field, alias: &str, b: Vec<(Option<i64>, i64)>) -> String {
        if fd.ty != FieldType::Time || b.is_empty() {
            return "FALSE".to_string();
        }
        let k = self.bounds.len();
        let col = format!("{alias}.{}", ident(&fd.name));
        // The hull of every period's bounds as constants too, so an index on the
        // time field can narrow the scan before the rows meet the buckets.
        let hi = b.iter().map(|x| x.1).max().unwrap_or(i64::MIN);
        let lo = b.iter().map(|x| x.0).collect::<Option<Vec<i64>>>();
        let mut hull = format!(" AND {col} < {}::timestamptz", self.bind(instant(hi)));
        if let Some(lo) = lo.and_then(|l| l.into_iter().min()) {
            hull.push_str(&format!(
                " AND {col} >= {}::timestamptz",
                self.bind(instant(lo))
            ));
        }
        self.bounds.push(b);
        format!("(p.lo{k} IS NULL OR {col} >= p.lo{k}) AND {col} < p.hi{k}{hull}")
    }

    /// `field op v` for any of `values` (one for a comparison, a set for one_of);
    /// a value of another type never matches, NULL never compares.
    fn compare(&mut self, fd: &Field, alias: &str, op: CmpOp, values: &[Scalar]) -> String {
        let col = format!("{alias}.{}", ident(&fd.name));
        let sym = match op {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        };
        let ints = || -> Vec<i64> {
            values
                .iter()
                .filter_map(|v| match v {
                    Scalar::Int(i) => Some(*i),
                    _ => None,
                })
                .collect()
        };
        let (lhs, rhs) = match fd.ty {
            FieldType::Integer => (col, self.any(ints(), "int8")),
            FieldType::Bool => (format!("{col}::int::int8"), self.any(ints(), "int8")),
            FieldType::Time => {
                let ts: Vec<SystemTime> = ints().into_iter().map(instant).collect();
                (col, self.any(ts, "timestamptz"))
            }
            FieldType::Real => {
                let rs: Vec<f64> = values
                    .iter()
                    .filter_map(|v| match v {
                        Scalar::Real(b) => Some(f64::from_bits(*b)),
                        Scalar::Int(i) => Some(*i as f64),
                        Scalar::Text(_) => None,
                    })
                    .collect();
                (col, self.any(rs, "float8"))
            }
            FieldType::Text => {
                let ts: Vec<String> = values
                    .iter()
                    .filter_map(|v| match v {
                        Scalar::Text(s) => Some(s.to_string()),
                        _ => None,
                    })
                    .collect();
                // Byte order, as the embedded store compares Rust strings.
                (format!("{col} COLLATE \"C\""), self.any(ts, "text"))
            }
        };
        match rhs {
            Some(arr) => format!("{lhs} {sym} ANY ({arr})"),
            None => "FALSE".to_string(),
        }
    }

    fn any<T: ToSql + Sync + Send + 'static>(&mut self, vs: Vec<T>, ty: &str) -> Option<String> {
        (!vs.is_empty()).then(|| format!("{}::{ty}[]", self.bind(vs)))
    }

    /// The aggregate columns (after `slot`), what they come back as, and the key to group by.
    fn aggregate(
        &mut self,
        entity: &Entity,
        alias: &str,
        agg: &Agg,
    ) -> Result<(String, Output, bool), QueryError> {
        Ok(match agg {
            Agg::Count => (
                ", count(*)::float8, 0::float8, 0::float8, 0::float8".into(),
                Output::Num,
                false,
            ),
            Agg::Sum(f) | Agg::Avg(f) | Agg::Min(f) | Agg::Max(f) => {
                let x = number(field(entity, f)?, alias);
                (num_columns(&x), Output::Num, false)
            }
            Agg::AvgSpan { from, to, .. } => {
                let (a, b) = (
                    number(field(entity, from)?, alias),
                    number(field(entity, to)?, alias),
                );
                (num_columns(&format!("({b} - {a})")), Output::Num, false)
            }
            Agg::CountDistinct(f) => {
                let (k, _) = key(field(entity, f)?, alias);
                (
                    format!(", count(DISTINCT {k})::float8"),
                    Output::Count,
                    false,
                )
            }
            Agg::Values(f) | Agg::CountBy(f) | Agg::CountDistinctAtLeast(f, _) => {
                let (k, kind) = key(field(entity, f)?, alias);
                (
                    format!(", {k} AS k_val, count(*)::float8 AS n_rows"),
                    Output::Keys(kind),
                    true,
                )
            }
        })
    }
}

/// Rows an aggregate reads only when its inputs are set.
fn agg_conditions(entity: &Entity, alias: &str, agg: &Agg) -> Result<Vec<String>, QueryError> {
    agg.fields()
        .into_iter()
        .map(|f| {
            let fd = field(entity, f)?;
            Ok(
                if fd.ty == FieldType::Text
                    && !matches!(
                        agg,
                        Agg::Values(_)
                            | Agg::CountBy(_)
                            | Agg::CountDistinct(_)
                            | Agg::CountDistinctAtLeast(..)
                    )
                {
                    // A text field has no number: the embedded store reads none.
                    "FALSE".to_string()
                } else {
                    format!("{alias}.{} IS NOT NULL", ident(&fd.name))
                },
            )
        })
        .collect()
}

fn num_columns(x: &str) -> String {
    format!(
        ", count({x})::float8, coalesce(sum({x}), 0)::float8, min({x})::float8, max({x})::float8"
    )
}

/// A field as a number: times in UTC ms, bools 0/1 (as the embedded store reads them).
fn number(fd: &Field, alias: &str) -> String {
    let col = format!("{alias}.{}", ident(&fd.name));
    match fd.ty {
        FieldType::Time => format!("(extract(epoch from {col}) * 1000)"),
        FieldType::Bool => format!("{col}::int::int8"),
        FieldType::Integer | FieldType::Real => col,
        FieldType::Text => "NULL::float8".to_string(),
    }
}

/// A field as a distinct-value key, and how it is read back.
fn key(fd: &Field, alias: &str) -> (String, KeyKind) {
    let col = format!("{alias}.{}", ident(&fd.name));
    match fd.ty {
        FieldType::Text => (col, KeyKind::Text),
        FieldType::Integer => (col, KeyKind::Int),
        FieldType::Bool => (format!("{col}::int::int8"), KeyKind::Int),
        FieldType::Time => (
            format!("(extract(epoch from {col}) * 1000)::int8"),
            KeyKind::Int,
        ),
        FieldType::Real => (col, KeyKind::Real),
    }
}

/// How the outer and the inner field of a semi-join are compared (`{}` is
/// the column), or None when their types cannot be (the embedded store's rule:
/// text with text, real with real, any of integer/bool/time with each other).
fn join_keys(outer: &Field, inner: &Field) -> Option<(String, String)> {
    use FieldType::*;
    let int_like = |t| matches!(t, Integer | Bool | Time);
    if outer.ty == inner.ty {
        return Some(("{}".into(), "{}".into()));
    }
    if int_like(outer.ty) && int_like(inner.ty) {
        let as_int = |t| match t {
            Time => "(extract(epoch from {}) * 1000)::int8".to_string(),
            Bool => "{}::int::int8".to_string(),
            _ => "{}".to_string(),
        };
        return Some((as_int(outer.ty), as_int(inner.ty)));
    }
    None
}

fn field<'e>(entity: &'e Entity, name: &str) -> Result<&'e Field, QueryError> {
    entity
        .field(name)
        .ok_or_else(|| QueryError::Name(entity.unknown_field(name)))
}

fn and(conds: &[String]) -> String {
    if conds.is_empty() {
        "TRUE".to_string()
    } else {
        conds.join(" AND ")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::toml_doc::Source;
    use crate::query::PeriodRef;

    fn schema() -> Schema {
        Schema::from_source(&Source::new(
            "schema.toml",
            "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n[entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nteam = \"text\"\nstage = \"text\"\namount = \"real\"\nclosed_at = \"time?\"\n",
        ))
        .unwrap()
    }

    fn compiled(query: &Query, agg: &Agg) -> Result<(Statement, Output), QueryError> {
        let schema = schema();
        let tree = TeamTree::new(vec![
            ("hq".into(), "HQ".into(), None),
            ("north".into(), "N".into(), Some("hq".into())),
        ]);
        let owners = Owners::new(Vec::new(), &tree);
        let periods: Vec<PeriodId> = vec!["2026-Q1".parse().unwrap(), "2026-Q2".parse().unwrap()];
        let cx = Context {
            schema: &schema,
            periods: &periods,
            cal: &Calendar::utc(),
            tree: &tree,
            owners: &owners,
        };
        compile(&cx, query, agg)
    }

    #[test]
    fn values_are_bound_never_written_into_the_text() {
        let hostile = "won'); DROP TABLE deals; --";
        let q = Query::new("deals")
            .with(Filter::Cmp {
                field: Arc::from("stage"),
                op: CmpOp::Eq,
                value: Scalar::Text(Arc::from(hostile)),
            })
            .with(Filter::InPeriod {
                field: Arc::from("closed_at"),
                period: PeriodRef::Relative(0),
                cut: None,
            });
        let (stmt, output) = compiled(&q, &Agg::Sum(Arc::from("amount"))).unwrap();
        assert!(!stmt.text.contains("DROP"), "{}", stmt.text);
        assert!(stmt.text.contains("\"deals\" r1"), "{}", stmt.text);
        assert!(
            stmt.text.contains("JOIN c c2 ON c2.team = r1.\"team\""),
            "{}",
            stmt.text
        );
        assert_eq!(output, Output::Num);
        // The period indexes, a bucket pair, the hull, the closure table and the stage.
        assert_eq!(stmt.params.len(), 8, "{}", stmt.text);
    }

    #[test]
    fn unknown_fields_and_mismatched_semi_joins_are_the_embedded_stores_errors() {
        let q = Query::new("deals");
        let err = compiled(&q, &Agg::Sum(Arc::from("amout"))).err().unwrap();
        assert!(err.to_string().contains("did you mean 'amount'"), "{err}");
        let semi = Query::new("deals").with(Filter::InQuery {
            field: Arc::from("amount"),
            query: Box::new(Query::new("deals")),
            of: Arc::from("stage"),
        });
        let err = compiled(&semi, &Agg::Count).err().unwrap();
        assert!(matches!(err, QueryError::JoinTypes { .. }), "{err}");
    }
}
