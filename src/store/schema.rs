//! The record schema: entities and typed fields, read from `kpis/schema.toml`.
//!
//! The schema is the only place the engine learns what CRM records look like.
//! Every identifier that reaches SQL is checked here first (a plain lowercase
//! identifier, not reserved), which is what makes building SQL text safe.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::toml_doc::{Node, Reader, Source};
use crate::diag::{Diagnostic, hint};

/// The entity that holds the team tree.
pub const TEAMS: &str = "teams";

/// The entity of the people records belong to (SPEC 14).
pub const OWNERS: &str = "owners";

/// How a record names its person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerLink {
    /// `owner_field = "owner"`: the field holds the owner's id.
    Field(String),
    /// `owner_via = { field = "deal", entity = "deals" }`: the record belongs to
    /// the owner of the `entity` record whose id is in `field`.
    Via { field: String, entity: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Text,
    Integer,
    Real,
    Bool,
    Time,
}

impl FieldType {
    fn parse(s: &str) -> Option<FieldType> {
        Some(match s {
            "text" => FieldType::Text,
            "integer" => FieldType::Integer,
            "real" => FieldType::Real,
            "bool" => FieldType::Bool,
            "time" => FieldType::Time,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Integer => "integer",
            FieldType::Real => "real",
            FieldType::Bool => "bool",
            FieldType::Time => "time",
        }
    }

    /// The SQLite column type. Times and bools are stored as integers.
    pub fn sql_type(self) -> &'static str {
        match self {
            FieldType::Text => "TEXT",
            FieldType::Integer | FieldType::Bool | FieldType::Time => "INTEGER",
            FieldType::Real => "REAL",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub optional: bool,
    /// Allowed values of a text field, when restricted.
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub name: String,
    /// The field holding the owning team's id; `None` only for `teams`.
    pub team_field: Option<String>,
    /// How a record names its owner (a person), if it does.
    pub owner: Option<OwnerLink>,
    /// `id` first, then the fields in file order.
    pub fields: Vec<Field>,
}

impl Entity {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The field that places a record in the team tree: the team field, or
    /// `id` for the teams entity itself.
    pub fn team_column(&self) -> Option<&str> {
        match &self.team_field {
            Some(f) => Some(f),
            None if self.name == TEAMS => Some("id"),
            None => None,
        }
    }

    /// Error text for an unknown field, with a hint.
    pub fn unknown_field(&self, name: &str) -> NameError {
        NameError::Field {
            entity: self.name.clone(),
            name: name.to_string(),
            hint: hint(name, self.fields.iter().map(|f| f.name.as_str())),
        }
    }
}

/// A name that the schema does not know, with a "did you mean" hint.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NameError {
    #[error("unknown entity '{name}'{hint}")]
    Entity { name: String, hint: String },
    #[error("{entity} has no field '{name}'{hint}")]
    Field {
        entity: String,
        name: String,
        hint: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schema {
    pub entities: BTreeMap<String, Entity>,
}

impl Schema {
    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.get(name)
    }

    /// Looks an entity up, or explains that it does not exist.
    pub fn require(&self, name: &str) -> Result<&Entity, NameError> {
        self.entity(name).ok_or_else(|| NameError::Entity {
            name: name.to_string(),
            hint: hint(name, self.entities.keys().map(String::as_str)),
        })
    }

    /// Reads `kpis/schema.toml`.
    pub fn from_source(src: &Source) -> Result<Schema, Vec<Diagnostic>> {
        let doc = src.parse().map_err(|e| vec![e])?;
        let mut r = Reader::new(src);
        r.deny_unknown(&doc, "schema.toml", &["entity"]);
        let mut schema = Schema::default();
        if let Some(entities) = doc.get("entity").and_then(|n| r.table(n, "entity")) {
            for (key, node) in entities {
                if let Some(entity) = read_entity(&mut r, &key.name, &key.span, node) {
                    schema.entities.insert(entity.name.clone(), entity);
                }
            }
        }
        check_owner_links(&mut r, &schema, &doc);
        match schema.entities.get(TEAMS) {
            None => r.error(
                &(0..0),
                "schema.toml must define the entity 'teams' (fields name and parent)",
            ),
            Some(t) if t.field("parent").is_none_or(|f| f.ty != FieldType::Text) => {
                r.error(&(0..0), "entity 'teams' needs a text field 'parent'")
            }
            Some(_) => {}
        }
        if r.errors.is_empty() {
            Ok(schema)
        } else {
            Err(r.errors)
        }
    }
}

/// Owner links name text fields, and `owner_via` an entity that has an owner field.
fn check_owner_links(r: &mut Reader<'_>, schema: &Schema, doc: &Node) {
    for e in schema.entities.values() {
        let Some(link) = &e.owner else { continue };
        let node = doc.get("entity").and_then(|n| n.get(&e.name));
        let span = node.map_or(0..0, |n| n.span.clone());
        let text_field = |ent: &Entity, f: &str| -> Result<(), String> {
            match ent.field(f) {
                None => Err(ent.unknown_field(f).to_string()),
                Some(x) if x.ty != FieldType::Text => {
                    Err(format!("{}.{f} must be a text field", ent.name))
                }
                Some(_) => Ok(()),
            }
        };
        let problem = match link {
            OwnerLink::Field(f) => text_field(e, f).err(),
            OwnerLink::Via { field, entity } => match schema.entity(entity) {
                None => Some(format!(
                    "owner_via: {}",
                    schema
                        .require(entity)
                        .err()
                        .map(|x| x.to_string())
                        .unwrap_or_default()
                )),
                Some(linked) if !matches!(linked.owner, Some(OwnerLink::Field(_))) => {
                    Some(format!("owner_via: entity '{entity}' has no owner_field"))
                }
                Some(_) => text_field(e, field).err(),
            },
        };
        if let Some(m) = problem {
            r.error(&span, format!("entity '{}': {m}", e.name));
        }
    }
}

/// A name that can be used as an SQL identifier without quoting problems.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with("_kpi")
        && !s.starts_with("sqlite_")
        && s.len() <= 64
}

fn read_entity(
    r: &mut Reader<'_>,
    name: &str,
    span: &std::ops::Range<usize>,
    node: &Node,
) -> Option<Entity> {
    if !is_identifier(name) {
        r.error(
            span,
            format!("entity name '{name}' must be a lowercase identifier (a-z, 0-9, _)"),
        );
        return None;
    }
    r.table(node, &format!("entity.{name}"))?;
    r.deny_unknown(
        node,
        &format!("entity.{name}"),
        &["team_field", "owner_field", "owner_via", "fields"],
    );
    let team_field = node
        .get("team_field")
        .and_then(|n| r.string(n, "team_field"));
    let mut fields = vec![Field {
        name: "id".into(),
        ty: FieldType::Text,
        optional: false,
        values: None,
    }];
    let Some(field_nodes) = node
        .get("fields")
        .and_then(|n| r.table(n, &format!("entity.{name}.fields")))
    else {
        r.error(
            span,
            format!("entity '{name}' has no [entity.{name}.fields] table"),
        );
        return None;
    };
    for (k, v) in field_nodes {
        if let Some(f) = read_field(r, name, &k.name, &k.span, v) {
            if f.name == "id" {
                if f.ty != FieldType::Text || f.optional {
                    r.error(
                        &k.span,
                        format!("{name}.id must be \"text\": it is the primary key"),
                    );
                }
                fields[0].values = None;
                continue;
            }
            fields.push(f);
        }
    }
    let owner = read_owner_link(r, name, node);
    let entity = Entity {
        name: name.to_string(),
        team_field,
        owner,
        fields,
    };
    check_team_field(r, &entity, node);
    Some(entity)
}

/// `owner_field = "owner"` or `owner_via = { field, entity }`.
fn read_owner_link(r: &mut Reader<'_>, name: &str, node: &Node) -> Option<OwnerLink> {
    let field = node.get("owner_field");
    let via = node.get("owner_via");
    if let (Some(_), Some(v)) = (field, via) {
        r.error(
            &v.span,
            format!("entity '{name}': set owner_field or owner_via, not both"),
        );
        return None;
    }
    if let Some(f) = field {
        return r.string(f, "owner_field").map(OwnerLink::Field);
    }
    let v = via?;
    r.table(v, "owner_via")?;
    r.deny_unknown(v, "owner_via", &["field", "entity"]);
    let get = |r: &mut Reader<'_>, key: &str| match v.get(key) {
        Some(n) => r.string(n, &format!("owner_via.{key}")),
        None => {
            r.error(&v.span, format!("owner_via needs `{key}`"));
            None
        }
    };
    let (field, entity) = (get(r, "field"), get(r, "entity"));
    Some(OwnerLink::Via {
        field: field?,
        entity: entity?,
    })
}

fn check_team_field(r: &mut Reader<'_>, entity: &Entity, node: &Node) {
    let span = node
        .get("team_field")
        .map_or(node.span.clone(), |n| n.span.clone());
    match &entity.team_field {
        None if entity.name != TEAMS => {
            r.error(&span, format!("entity '{}' needs team_field", entity.name))
        }
        Some(tf) => match entity.field(tf) {
            None => r.error(&span, format!("team_field: {}", entity.unknown_field(tf))),
            Some(f) if f.ty != FieldType::Text => {
                r.error(&span, format!("team_field '{tf}' must be a text field"))
            }
            Some(_) => {}
        },
        None => {}
    }
}

fn read_field(
    r: &mut Reader<'_>,
    entity: &str,
    name: &str,
    span: &std::ops::Range<usize>,
    node: &Node,
) -> Option<Field> {
    if !is_identifier(name) {
        r.error(
            span,
            format!("field name '{entity}.{name}' must be a lowercase identifier (a-z, 0-9, _)"),
        );
        return None;
    }
    let (type_node, values) = match node.as_table() {
        Some(_) => {
            r.deny_unknown(node, &format!("field {entity}.{name}"), &["type", "values"]);
            let Some(t) = node.get("type") else {
                r.error(span, format!("field {entity}.{name} needs a type"));
                return None;
            };
            let values = node.get("values").and_then(|v| r.string_list(v, "values"));
            (t, values)
        }
        None => (node, None),
    };
    let text = r.string(type_node, &format!("type of {entity}.{name}"))?;
    let (base, optional) = match text.strip_suffix('?') {
        Some(b) => (b, true),
        None => (text.as_str(), false),
    };
    let Some(ty) = FieldType::parse(base) else {
        let h = hint(base, ["text", "integer", "real", "bool", "time"]);
        r.error(&type_node.span, format!("unknown type '{text}' for {entity}.{name} (text, integer, real, bool, time, with ? for optional){h}"));
        return None;
    };
    if values.is_some() && ty != FieldType::Text {
        r.error(
            span,
            format!("values = [...] only restricts a text field; {entity}.{name} is {ty}"),
        );
    }
    Some(Field {
        name: name.to_string(),
        ty,
        optional,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Schema, Vec<Diagnostic>> {
        Schema::from_source(&Source::new("kpis/schema.toml", text))
    }

    const TEAMS_TOML: &str = "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n";

    #[test]
    fn reads_types_optional_and_values() {
        let s = parse(&format!(
            "{TEAMS_TOML}[entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nid = \"text\"\nteam = \"text\"\nstage = {{ type = \"text\", values = [\"won\",\"lost\"] }}\nclosed_at = \"time?\"\n"
        ))
        .unwrap();
        let deals = s.entity("deals").unwrap();
        assert_eq!(
            deals
                .fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>(),
            ["id", "team", "stage", "closed_at"]
        );
        assert!(deals.field("closed_at").unwrap().optional);
        assert_eq!(
            deals.field("stage").unwrap().values.as_deref().unwrap(),
            ["won", "lost"]
        );
        assert_eq!(s.entity("teams").unwrap().team_column(), Some("id"));
    }

    #[test]
    fn names_bad_types_and_unknown_keys_with_position() {
        let errs = parse(&format!(
            "{TEAMS_TOML}[entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nteam = \"text\"\namount = \"reel\"\n"
        ))
        .unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, 8);
        assert!(
            errs[0].message.contains("did you mean 'real'"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn refuses_sql_unsafe_names_and_missing_team_field() {
        let errs = parse(&format!("{TEAMS_TOML}[entity.\"x;drop\".fields]\na = \"text\"\n[entity.t.fields]\na = \"text\"\n")).unwrap_err();
        let text: Vec<_> = errs.iter().map(|e| e.message.as_str()).collect();
        assert!(
            text.iter().any(|m| m.contains("lowercase identifier")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|m| m.contains("needs team_field")),
            "{text:?}"
        );
        assert!(
            !is_identifier("_kpi_meta") && !is_identifier("Deals") && is_identifier("web_traffic")
        );
    }
}
