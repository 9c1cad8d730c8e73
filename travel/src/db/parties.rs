//! The `parties` table: memberships of users in trips.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Store, StoreError};
use crate::params::Page;

/// A membership as the API shows it (members sorted like the original).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// The member.
    pub id_participant: i64,
    /// The trip.
    pub id_trip: i64,
}

/// Record a membership; [`StoreError::Conflict`] if it exists.
pub async fn join(store: &Store, user: i64, trip: i64) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO parties (id_participant, id_trip) VALUES ($1, $2)")
        .bind(user)
        .bind(trip)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Record a membership unless it exists (idempotent).
pub async fn ensure(store: &Store, user: i64, trip: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO parties (id_participant, id_trip) VALUES ($1, $2) \
         ON CONFLICT (id_participant, id_trip) DO NOTHING",
    )
    .bind(user)
    .bind(trip)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Whether `user` is a member of `trip`.
pub async fn is_member(store: &Store, user: i64, trip: i64) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT id_trip FROM parties WHERE id_participant = $1 AND id_trip = $2")
        .bind(user)
        .bind(trip)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.is_some())
}

/// The memberships of `user`, by trip id.
pub async fn of_user(store: &Store, user: i64, page: Page) -> Result<Vec<Party>, StoreError> {
    let rows = sqlx::query(
        "SELECT id_participant, id_trip FROM parties WHERE id_participant = $1 \
         ORDER BY id_trip LIMIT $2 OFFSET $3",
    )
    .bind(user)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Party {
                id_participant: r.try_get("id_participant")?,
                id_trip: r.try_get("id_trip")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}
