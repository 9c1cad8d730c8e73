//! The `users` table: registration, credential lookup, reads and prefix search.

use serde::{Serialize, Serializer};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, like_prefix};
use crate::params::Page;

/// Serialises as the original's masked password, `"*******"`; the hash never leaves the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Masked;

impl Serialize for Masked {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("*******")
    }
}

/// A user as the API shows it (members sorted like the original).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    /// Email address.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Id.
    pub id: i64,
    /// Last name.
    pub last_name: String,
    /// Login (unique).
    pub login: String,
    /// Always `*******`.
    pub password: Masked,
    /// Title.
    pub title: String,
}

/// A validated registration, with the password already hashed.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// First name.
    pub first_name: &'a str,
    /// Last name.
    pub last_name: &'a str,
    /// Email address.
    pub email: &'a str,
    /// Title.
    pub title: &'a str,
    /// Login.
    pub login: &'a str,
    /// Argon2id PHC string.
    pub password_hash: &'a str,
}

const COLUMNS: &str = "id, first_name, last_name, login, email, title";

fn user(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        email: row.try_get("email")?,
        first_name: row.try_get("first_name")?,
        id: row.try_get("id")?,
        last_name: row.try_get("last_name")?,
        login: row.try_get("login")?,
        password: Masked,
        title: row.try_get("title")?,
    })
}

/// Insert a user; [`StoreError::Conflict`] when the login is taken.
pub async fn insert(store: &Store, u: &NewUser<'_>) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO users (first_name, last_name, email, title, login, password_hash) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(u.first_name)
    .bind(u.last_name)
    .bind(u.email)
    .bind(u.title)
    .bind(u.login)
    .bind(u.password_hash)
    .fetch_one(store.pool())
    .await?;
    Ok(row.try_get("id")?)
}

/// Whether `login` is taken (checked before the costly hash; the unique index has the last word).
pub async fn login_exists(store: &Store, login: &str) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT id FROM users WHERE login = $1")
        .bind(login)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.is_some())
}

/// Id and password hash of `login`, if registered.
pub async fn credentials(store: &Store, login: &str) -> Result<Option<(i64, String)>, StoreError> {
    let row = sqlx::query("SELECT id, password_hash FROM users WHERE login = $1")
        .bind(login)
        .fetch_optional(store.pool())
        .await?;
    match row {
        Some(r) => Ok(Some((r.try_get("id")?, r.try_get("password_hash")?))),
        None => Ok(None),
    }
}

/// The user with `id`.
pub async fn by_id(store: &Store, id: i64) -> Result<Option<User>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.as_ref().map(user).transpose()?)
}

/// Users whose names start with the given prefixes (case-sensitive), by id.
pub async fn search(
    store: &Store,
    first_name: &str,
    last_name: &str,
    page: Page,
) -> Result<Vec<User>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM users \
         WHERE first_name LIKE $1 ESCAPE '\\' AND last_name LIKE $2 ESCAPE '\\' \
         ORDER BY id LIMIT $3 OFFSET $4"
    ))
    .bind(like_prefix(first_name))
    .bind(like_prefix(last_name))
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.iter().map(user).collect::<Result<_, _>>()?)
}
