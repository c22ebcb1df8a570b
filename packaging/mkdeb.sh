#!/bin/sh
# mkdeb.sh STAGE VERSION ARCH OUT.deb
#
# Turns a `make install DESTDIR=STAGE PREFIX=/usr` tree into a Debian binary
# package with dpkg-deb (no debhelper needed).  Files are owned by root in the
# package whoever builds it (--root-owner-group).
set -eu
stage=$1
version=$2
arch=$3
out=$4
here=$(dirname "$0")

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    "$here/control.in" > "$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
    xargs md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"
find "$stage" -type d -exec chmod 0755 {} +
mkdir -p "$(dirname "$out")"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out"
