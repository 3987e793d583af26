#!/bin/sh
# Builds the syncagent .deb packages with nfpm (`make deb`).
#
#   packaging/deb/build.sh [-a "amd64 arm64 armhf"] [-t TAGS] [-v VERSION] [-o DIR]
#
# -a  Debian architectures (default: amd64 arm64 armhf; armhf is GOARM=7)
# -t  extra Go build tags; the version gets "+TAGS" so a test build never
#     passes for a release (the systemd end-to-end test uses -t faultinject)
# -v  upstream version (default: from git, 0.1.0~gitYYYYMMDD.HASH); the
#     package version adds the Debian revision -1
# -o  output directory (default: dist)
#
# Run from the top of the source tree. Needs Go; nfpm runs through `go run`
# at the version pinned in NFPM below (no install, no go.mod entry).
set -eu

# nfpm pinned. v2.46 and later need modules that the module proxy refuses
# (go.digitalxero.dev), so stay on v2.45.x until that changes.
NFPM=${NFPM:-github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2}
GO=${GO:-go}

arches="amd64 arm64 armhf"
tags=""
version=""
out=dist
while getopts a:t:v:o: opt; do
	case $opt in
	a) arches=$OPTARG ;;
	t) tags=$OPTARG ;;
	v) version=$OPTARG ;;
	o) out=$OPTARG ;;
	*) exit 2 ;;
	esac
done

[ -f packaging/deb/nfpm.yaml ] || { echo "build.sh: run from the top of the source tree" >&2; exit 2; }

commit=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
# Commit time, so two builds of one commit carry the same dates.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
if [ -z "$version" ]; then
	tag=$(git describe --tags --abbrev=0 2>/dev/null || true)
	if [ -n "$tag" ] && [ "$(git describe --tags 2>/dev/null)" = "$tag" ]; then
		version=${tag#v}
	else
		base=${tag#v}
		version=${base:-0.1.0}~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d).$commit
	fi
	# An uncommitted tree must not pass for the commit.
	if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
		version=$version.dirty
	fi
fi
if [ -n "$tags" ]; then
	version=$version+$(echo "$tags" | tr -c 'a-z0-9\n' '.')
fi
goversion=$version # what `syncagent version` prints

stage_root=$(mktemp -d "${TMPDIR:-/var/tmp}/syncagent-deb.XXXXXX")
trap 'rm -rf "$stage_root"' EXIT INT TERM
mkdir -p "$out"

# The man page comes from the --help text of a binary for this machine.
CGO_ENABLED=0 $GO build -trimpath -o "$stage_root/syncagent-host" ./agent/cmd/syncagent
$GO run ./packaging/manpage -bin "$stage_root/syncagent-host" -version "$version" >"$stage_root/syncagent.1"
gzip -9n <"$stage_root/syncagent.1" >"$stage_root/syncagent.1.gz"

# A Debian changelog with one entry for this build.
{
	echo "syncagent ($version-1) unstable; urgency=medium"
	echo
	echo "  * Build of commit $commit; the source history has the changes."
	echo
	echo " -- syncagent maintainers <syncagent@example.org>  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$stage_root/changelog.Debian.gz"

for arch in $arches; do
	case $arch in
	amd64) goarch=amd64 goarm= ;;
	arm64) goarch=arm64 goarm= ;;
	armhf) goarch=arm goarm=7 ;;
	*) echo "build.sh: unknown architecture $arch (amd64, arm64, armhf)" >&2; exit 2 ;;
	esac
	stage=$stage_root/$arch
	mkdir -p "$stage"
	cp "$stage_root/syncagent.1.gz" "$stage_root/changelog.Debian.gz" "$stage/"
	# Static (no cgo) and stripped (-s -w: no symbol table, no DWARF).
	CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm $GO build -trimpath -tags "$tags" \
		-ldflags "-s -w -X syncagent/agent/version.Version=$goversion -buildid=" \
		-o "$stage/syncagent" ./agent/cmd/syncagent
	deb=$out/syncagent_${version}-1_$arch.deb
	SA_ARCH=$arch SA_VERSION=$version SA_STAGE=$stage \
		$GO run "$NFPM" package --config packaging/deb/nfpm.yaml --packager deb --target "$deb" >/dev/null
	echo "$deb"
done
