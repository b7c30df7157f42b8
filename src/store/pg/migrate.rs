//! The schema in PostgreSQL: the plan of `store::db` (same additions, same
//! refusals with the same messages) applied with PostgreSQL's DDL, in one
//! transaction that holds the engine's advisory write lock.

use std::cell::RefCell;

use postgres::{Client, Transaction};

use super::sql;
use crate::store::StoreError;
use crate::store::db::{self, Change, SchemaProbe, StoredField};
use crate::store::schema::Schema;

/// What `db::plan` needs to know, asked of a PostgreSQL transaction.
struct Probe<'a, 't>(RefCell<&'a mut Transaction<'t>>);

impl Probe<'_, '_> {
    fn exists(&self, query: Option<String>) -> Result<bool, StoreError> {
        match query {
            Some(q) => Ok(self.0.borrow_mut().query_one(&q, &[])?.get(0)),
            // A name that is no identifier was never made into a table by the engine.
            None => Ok(false),
        }
    }
}

impl SchemaProbe for Probe<'_, '_> {
    fn stored_fields(&self) -> Result<Vec<StoredField>, StoreError> {
        Ok(self
            .0
            .borrow_mut()
            .query(sql::STORED_FIELDS, &[])?
            .iter()
            .map(|r| StoredField {
                entity: r.get(0),
                field: r.get(1),
                ty: r.get(2),
                optional: r.get(3),
            })
            .collect())
    }

    fn has_rows(&self, entity: &str) -> Result<bool, StoreError> {
        self.exists(sql::has_rows_of(entity))
    }

    fn field_has_nulls(&self, entity: &str, field: &str) -> Result<bool, StoreError> {
        self.exists(sql::field_has(entity, field, true))
    }

    fn field_has_data(&self, entity: &str, field: &str) -> Result<bool, StoreError> {
        self.exists(sql::field_has(entity, field, false))
    }
}

/// The changes the schema asks of the database, or the refusals; nothing is written.
pub fn plan(client: &mut Client, schema: &Schema) -> Result<Vec<Change>, StoreError> {
    let mut tx = client.transaction()?;
    let changes = db::plan(&Probe(RefCell::new(&mut tx)), schema);
    tx.rollback()?;
    changes
}

/// Brings the database in line with the schema, in one transaction.
pub fn migrate(client: &mut Client, schema: &Schema) -> Result<Vec<Change>, StoreError> {
    let mut tx = client.transaction()?;
    let changes = migrate_in(&mut tx, schema)?;
    tx.commit()?;
    Ok(changes)
}

/// [`migrate`] inside a transaction the caller commits (it takes the write lock).
pub fn migrate_in(tx: &mut Transaction<'_>, schema: &Schema) -> Result<Vec<Change>, StoreError> {
    tx.batch_execute(sql::WRITE_LOCK)?;
    let changes = db::plan(&Probe(RefCell::new(&mut *tx)), schema)?;
    for change in &changes {
        apply(tx, schema, change)?;
    }
    for entity in schema.entities.values() {
        for index in sql::create_indexes(entity) {
            tx.batch_execute(&index)?;
        }
    }
    Ok(changes)
}

fn apply(tx: &mut Transaction<'_>, schema: &Schema, change: &Change) -> Result<(), StoreError> {
    let entity = |e: &str| schema.entity(e).expect("planned from the schema");
    let field = |e: &str, f: &str| entity(e).field(f).expect("planned from the schema").clone();
    match change {
        Change::CreateEntity(e) => {
            let ent = entity(e);
            tx.batch_execute(&sql::create_entity(ent))?;
            for f in &ent.fields {
                record_field(tx, e, f)?;
            }
        }
        Change::AddField(e, f) => {
            let fd = field(e, f);
            tx.batch_execute(&sql::add_field(entity(e), &fd))?;
            record_field(tx, e, &fd)?;
        }
        Change::RetypeField(e, f) => {
            let fd = field(e, f);
            tx.batch_execute(&sql::drop_field(e, f))?;
            tx.batch_execute(&sql::add_field(entity(e), &fd))?;
            record_field(tx, e, &fd)?;
        }
        Change::DropField(e, f) => {
            tx.batch_execute(&sql::drop_field(e, f))?;
            tx.execute(sql::FORGET_FIELD, &[e, f])?;
        }
        Change::SetOptional(e, f) => record_field(tx, e, &field(e, f))?,
        Change::DropEntity(e) => {
            if crate::store::schema::is_identifier(e) {
                tx.batch_execute(&sql::drop_entity(e))?;
            }
            tx.execute(sql::FORGET_ENTITY, &[e])?;
        }
    }
    Ok(())
}

fn record_field(
    tx: &mut Transaction<'_>,
    entity: &str,
    f: &crate::store::Field,
) -> Result<(), StoreError> {
    tx.execute(
        sql::RECORD_FIELD,
        &[&entity, &f.name, &f.ty.name(), &f.optional],
    )?;
    Ok(())
}
