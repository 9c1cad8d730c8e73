//! The `trips` table: create (client-chosen or assigned id), owner-only replace, reads.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

/// A trip as the API shows it (members sorted like the original).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Trip {
    /// Finish time (free text, as in the original).
    pub fin_time: String,
    /// Id.
    pub id: i64,
    /// Creator; the only user allowed to replace it.
    pub id_owner: i64,
    /// The path travelled.
    pub id_path: i64,
    /// Name.
    pub name: String,
    /// Start time (free text).
    pub start_time: String,
}

/// The client-supplied fields of a trip.
#[derive(Clone, Copy, Debug)]
pub struct TripData<'a> {
    /// The path travelled.
    pub id_path: i64,
    /// Name.
    pub name: &'a str,
    /// Start time.
    pub start_time: &'a str,
    /// Finish time.
    pub fin_time: &'a str,
}

const COLUMNS: &str = "id, id_owner, id_path, name, start_time, fin_time";

fn trip(row: &AnyRow) -> Result<Trip, sqlx::Error> {
    Ok(Trip {
        fin_time: row.try_get("fin_time")?,
        id: row.try_get("id")?,
        id_owner: row.try_get("id_owner")?,
        id_path: row.try_get("id_path")?,
        name: row.try_get("name")?,
        start_time: row.try_get("start_time")?,
    })
}

/// Insert a trip owned by `owner`, with `id` or the next free one; [`StoreError::Conflict`]
/// when the id is taken.
pub async fn insert(
    store: &Store,
    id: Option<i64>,
    owner: i64,
    t: TripData<'_>,
) -> Result<i64, StoreError> {
    if let Some(id) = id {
        let row = sqlx::query(&format!(
            "INSERT INTO trips ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"
        ))
        .bind(id)
        .bind(owner)
        .bind(t.id_path)
        .bind(t.name)
        .bind(t.start_time)
        .bind(t.fin_time)
        .fetch_one(store.pool())
        .await?;
        return Ok(row.try_get("id")?);
    }
    // max + 1 in one statement. Two concurrent creations on PostgreSQL can compute the same
    // id; the primary key refuses the second, which then simply tries again.
    let mut attempts = 0;
    loop {
        let result = sqlx::query(&format!(
            "INSERT INTO trips ({COLUMNS}) \
             SELECT COALESCE(MAX(id), 0) + 1, CAST($1 AS BIGINT), CAST($2 AS BIGINT), $3, $4, $5 \
             FROM trips RETURNING id"
        ))
        .bind(owner)
        .bind(t.id_path)
        .bind(t.name)
        .bind(t.start_time)
        .bind(t.fin_time)
        .fetch_one(store.pool())
        .await
        .map_err(StoreError::from);
        match result {
            Ok(row) => return Ok(row.try_get("id")?),
            Err(StoreError::Conflict) if attempts < 5 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Replace the fields of trip `id` (owner unchanged).
pub async fn update(store: &Store, id: i64, t: TripData<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE trips SET id_path = $1, name = $2, start_time = $3, fin_time = $4 WHERE id = $5",
    )
    .bind(t.id_path)
    .bind(t.name)
    .bind(t.start_time)
    .bind(t.fin_time)
    .bind(id)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Delete trip `id` (undoes a creation whose membership could not be recorded).
pub async fn delete(store: &Store, id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM trips WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// The trip with `id`.
pub async fn by_id(store: &Store, id: i64) -> Result<Option<Trip>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM trips WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.as_ref().map(trip).transpose()?)
}

/// Whether trip `id` exists (parties' check on join).
pub async fn exists(store: &Store, id: i64) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT id FROM trips WHERE id = $1")
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.is_some())
}

/// The trips among `ids` that exist, in the order of `ids` (missing ones skipped).
pub async fn by_ids(store: &Store, ids: &[i64]) -> Result<Vec<Trip>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (1..=ids.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT {COLUMNS} FROM trips WHERE id IN ({placeholders})");
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(store.pool()).await?;
    let mut found: std::collections::HashMap<i64, Trip> = rows
        .iter()
        .map(|r| trip(r).map(|t| (t.id, t)))
        .collect::<Result<_, _>>()?;
    Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
}
