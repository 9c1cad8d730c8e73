-- Schema of the travel services on SQLite. Every statement is idempotent so that two
-- processes starting together on one file cannot fail each other (see db::Store::migrate).
-- Columns use the BINARY collation; with PRAGMA case_sensitive_like = ON (set per connection),
-- `LIKE 'prefix%'` is case-sensitive like the original and can use these indexes.

CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    login         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    first_name    TEXT NOT NULL,
    last_name     TEXT NOT NULL,
    email         TEXT NOT NULL,
    title         TEXT NOT NULL
);
-- GET /user/search: first_name LIKE 'x%' AND last_name LIKE 'y%'.
CREATE INDEX IF NOT EXISTS users_names_idx ON users (first_name, last_name);

CREATE TABLE IF NOT EXISTS paths (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    startpoint TEXT NOT NULL,
    endpoint   TEXT NOT NULL
);
-- GET /path/search: startpoint LIKE 'x%'.
CREATE INDEX IF NOT EXISTS paths_startpoint_idx ON paths (startpoint);

-- Trip ids are chosen by the client (as in the original) or assigned as max + 1.
CREATE TABLE IF NOT EXISTS trips (
    id         INTEGER PRIMARY KEY,
    id_owner   INTEGER NOT NULL,
    id_path    INTEGER NOT NULL,
    name       TEXT NOT NULL,
    start_time TEXT NOT NULL,
    fin_time   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trips_owner_idx ON trips (id_owner);

-- Memberships. No foreign key to trips: the services may run on separate databases one day,
-- and GET /trips already tolerates memberships whose trip is gone.
CREATE TABLE IF NOT EXISTS parties (
    id_participant INTEGER NOT NULL,
    id_trip        INTEGER NOT NULL,
    PRIMARY KEY (id_participant, id_trip)
) WITHOUT ROWID;
-- Members of one trip.
CREATE INDEX IF NOT EXISTS parties_trip_idx ON parties (id_trip);
