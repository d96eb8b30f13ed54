set -euo pipefail
# A Spring Boot style launcher on an openjdk/temurin base: JAVA_OPTS with a default, an
# optional debug agent, `java -jar` with word-split options.

JAVA_OPTS="${JAVA_OPTS:--Xms256m -Xmx512m}"
APP_HOME=/opt/app
if [[ -n "${DEBUG:-}" ]]; then
  JAVA_OPTS="$JAVA_OPTS -agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=*:5005"
fi

# shellcheck disable=SC2086
exec java $JAVA_OPTS -Djava.security.egd=file:/dev/./urandom -jar "$APP_HOME/lib/app.jar" "$@"
