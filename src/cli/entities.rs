//! The entity list of `kpi import --help`, read from the schema of the root.

use std::path::Path;

use kpi_engine::config::toml_doc::Source;
use kpi_engine::store::Schema;

/// "Entities of ROOT/kpis/schema.toml: …", one line an entity with its
/// fields (`?` = optional); None when there is no readable schema.
pub fn help(root: &Path) -> Option<String> {
    let path = root.join("kpis/schema.toml");
    let text = std::fs::read_to_string(&path).ok()?;
    let schema = Schema::from_source(&Source::new("kpis/schema.toml", text)).ok()?;
    let mut out = format!("Entities of {}:", path.display());
    for (name, entity) in &schema.entities {
        let fields: Vec<String> = entity
            .fields
            .iter()
            .filter(|f| f.name != "id")
            .map(|f| format!("{}{}", f.name, if f.optional { "?" } else { "" }))
            .collect();
        out.push_str(&format!("\n  {name:<14} id, {}", fields.join(", ")));
    }
    Some(out)
}
