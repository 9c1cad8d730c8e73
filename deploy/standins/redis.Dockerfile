# Stand-in for the official redis:7 image, from Debian bookworm's Redis 7.0 (the official
# redis:7 tag is the newest 7.x). scripts/check-containers builds it as
# gateway-standin/redis:7.0 and swaps it in with compose.override.yml. Like the official
# image it runs the command as the redis user, with no config file, and with protected
# mode off (the official image builds Redis with that default), so that other containers
# on the network can connect.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
