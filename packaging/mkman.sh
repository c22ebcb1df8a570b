#!/bin/sh
# mkman.sh PROGRAM VERSION > PROGRAM.1
#
# Writes a man page for one of the Asya programs from its own --help text, so
# `man asya-invoke` shows the same thing as `asya-invoke --help` and the two
# cannot drift apart.
set -eu
prog=$1
version=$2
name=$(basename "$prog")
case $name in
    asya-runtime) what="serve an Asya handler library on a unix socket" ;;
    asya-sidecar) what="relay an actor's RabbitMQ queue to asya-runtime and route the results" ;;
    asya-invoke)  what="run one envelope or payload through an Asya handler" ;;
    asya-gateway) what="MCP tools that start Asya jobs, with progress over SSE" ;;
    *)            what="Asya program" ;;
esac
upper=$(echo "$name" | tr '[:lower:]' '[:upper:]')
printf '.TH %s 1 "" "asya %s" "User Commands"\n' "$upper" "$version"
printf '.SH NAME\n%s \\- %s\n' "$(echo "$name" | sed 's/-/\\-/g')" "$what"
printf '.SH DESCRIPTION\n.nf\n'
# Escape backslashes, and protect lines that start with a roff control character.
"$prog" --help | sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
printf '.fi\n.SH SEE ALSO\nasya-runtime(1), asya-sidecar(1), asya-invoke(1), asya-gateway(1)\n'
