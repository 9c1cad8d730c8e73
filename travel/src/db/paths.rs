//! The `paths` table: create, read, prefix search. Paths are global (no owner).

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, like_prefix};
use crate::params::Page;

/// A path as the API shows it (members sorted like the original).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TravelPath {
    /// Where it ends.
    pub endpoint: String,
    /// Id.
    pub id: i64,
    /// Where it starts.
    pub startpoint: String,
}

fn path(row: &AnyRow) -> Result<TravelPath, sqlx::Error> {
    Ok(TravelPath {
        endpoint: row.try_get("endpoint")?,
        id: row.try_get("id")?,
        startpoint: row.try_get("startpoint")?,
    })
}

/// Insert a path, returning its id.
pub async fn insert(store: &Store, startpoint: &str, endpoint: &str) -> Result<i64, StoreError> {
    let row = sqlx::query("INSERT INTO paths (startpoint, endpoint) VALUES ($1, $2) RETURNING id")
        .bind(startpoint)
        .bind(endpoint)
        .fetch_one(store.pool())
        .await?;
    Ok(row.try_get("id")?)
}

/// The path with `id`.
pub async fn by_id(store: &Store, id: i64) -> Result<Option<TravelPath>, StoreError> {
    let row = sqlx::query("SELECT id, startpoint, endpoint FROM paths WHERE id = $1")
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.as_ref().map(path).transpose()?)
}

/// Paths whose startpoint begins with `prefix` (case-sensitive), by id.
pub async fn search(
    store: &Store,
    prefix: &str,
    page: Page,
) -> Result<Vec<TravelPath>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, startpoint, endpoint FROM paths WHERE startpoint LIKE $1 ESCAPE '\\' \
         ORDER BY id LIMIT $2 OFFSET $3",
    )
    .bind(like_prefix(prefix))
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.iter().map(path).collect::<Result<_, _>>()?)
}
