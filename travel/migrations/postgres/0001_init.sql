-- Schema of the travel services on PostgreSQL. Idempotent, like the SQLite one.
-- Text columns that are searched by prefix use the "C" collation: byte order makes
-- `LIKE 'prefix%'` case-sensitive (as in the original) and lets it use plain B-tree indexes.

CREATE TABLE IF NOT EXISTS users (
    id            BIGSERIAL PRIMARY KEY,
    login         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    first_name    TEXT COLLATE "C" NOT NULL,
    last_name     TEXT COLLATE "C" NOT NULL,
    email         TEXT NOT NULL,
    title         TEXT NOT NULL
);
-- GET /user/search: first_name LIKE 'x%' AND last_name LIKE 'y%'.
CREATE INDEX IF NOT EXISTS users_names_idx ON users (first_name, last_name);

CREATE TABLE IF NOT EXISTS paths (
    id         BIGSERIAL PRIMARY KEY,
    startpoint TEXT COLLATE "C" NOT NULL,
    endpoint   TEXT NOT NULL
);
-- GET /path/search: startpoint LIKE 'x%'.
CREATE INDEX IF NOT EXISTS paths_startpoint_idx ON paths (startpoint);

-- Trip ids are chosen by the client (as in the original) or assigned as max + 1.
CREATE TABLE IF NOT EXISTS trips (
    id         BIGINT PRIMARY KEY,
    id_owner   BIGINT NOT NULL,
    id_path    BIGINT NOT NULL,
    name       TEXT NOT NULL,
    start_time TEXT NOT NULL,
    fin_time   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trips_owner_idx ON trips (id_owner);

-- Memberships; no foreign key to trips (see the SQLite schema).
CREATE TABLE IF NOT EXISTS parties (
    id_participant BIGINT NOT NULL,
    id_trip        BIGINT NOT NULL,
    PRIMARY KEY (id_participant, id_trip)
);
CREATE INDEX IF NOT EXISTS parties_trip_idx ON parties (id_trip);
