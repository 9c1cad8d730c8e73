# Stand-in for the official postgres image, from Debian bookworm's PostgreSQL 15 (the
# official image docker-compose.yml names is PostgreSQL 16). scripts/check-containers
# builds it as gateway-standin/postgres:15 and swaps it in with compose.override.yml.
# It keeps the parts of the official image's contract docker-compose.yml relies on:
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB create the role and database on first
# start, PGDATA is /var/lib/postgresql/data (the volume), the server listens on every
# address with password (scram-sha-256) authentication, and pg_isready is on the PATH.
FROM debian:bookworm-slim
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p "$PGDATA" /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
