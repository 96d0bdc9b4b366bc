#!/usr/bin/env bash
# Refresh the vendored front-end assets in tracker/static/vendor/ from the npm
# registry.
#
# Packages are fetched with `npm pack` into a temporary directory and
# unpacked there, so nothing (node_modules, package-lock.json, tarballs) is left
# in the repository. Only tracker/static/vendor/htmx/ and
# tracker/static/vendor/uswds/ are replaced; anything else under
# tracker/static/vendor/ is left alone.
#
# To upgrade: bump the pinned versions below, rerun the script, and review the
# diff.
#   npm view htmx.org versions --json       # stay on 2.0.x (not 3.x/4.x)
#   npm view @uswds/uswds versions --json   # stay on 3.x
#
# Usage: scripts/vendor-assets.sh
set -euo pipefail

HTMX_VERSION="2.0.11"
USWDS_VERSION="3.14.0"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
VENDOR_DIR="${REPO_ROOT}/tracker/static/vendor"

log() { printf '==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

command -v npm >/dev/null 2>&1 || die "npm is required"
command -v node >/dev/null 2>&1 || die "node is required"
command -v tar >/dev/null 2>&1 || die "tar is required"

# --- Check the pinned versions ----------------------------------------------
# htmx must stay on the 2.0.x line, at 2.0.5 or later.
if [[ ! "${HTMX_VERSION}" =~ ^2\.0\.([0-9]+)$ ]] || (( BASH_REMATCH[1] < 5 )); then
  die "HTMX_VERSION must be a 2.0.x release >= 2.0.5 (got '${HTMX_VERSION}')"
fi
if [[ ! "${USWDS_VERSION}" =~ ^3\.[0-9]+\.[0-9]+$ ]]; then
  die "USWDS_VERSION must be a 3.x release (got '${USWDS_VERSION}')"
fi

TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/vendor-assets.XXXXXX")"
trap 'rm -rf "${TMP_DIR}"' EXIT

# fetch <package> <version> <dest-dir>: npm pack the exact version and unpack it
# into <dest-dir> (the tarball's top-level "package/" folder is removed).
fetch() {
  local pkg="$1" version="$2" dest="$3" tarball
  log "Fetching ${pkg}@${version}"
  # Run npm from inside the temp dir so it never touches the repo.
  tarball="$(cd "${TMP_DIR}" && npm pack --silent --ignore-scripts "${pkg}@${version}" | tail -n 1)"
  [[ -f "${TMP_DIR}/${tarball}" ]] || die "npm pack did not produce a tarball for ${pkg}@${version}"
  mkdir -p "${dest}"
  tar -xzf "${TMP_DIR}/${tarball}" -C "${dest}" --strip-components=1
  local got
  got="$(node -p 'require(process.argv[1]).version' "${dest}/package.json")"
  [[ "${got}" == "${version}" ]] || die "${pkg}: expected version ${version}, tarball has ${got}"
}

# css_urls <css-file>: print every url(...) target in the file, one per line,
# with any quotes removed.
css_urls() {
  grep -oE 'url\([^)]*\)' "$1" \
    | sed -E 's/^url\([[:space:]]*//; s/[[:space:]]*\)$//; s/^["'\'']//; s/["'\'']$//' \
    || true
}

# css_local_refs <css-file>: print the relative file references (without any
# ?query or #fragment), deduplicated. Skips empty url(), data:, absolute URLs,
# root-relative paths and fragment-only references.
css_local_refs() {
  css_urls "$1" | while IFS= read -r ref; do
    case "${ref}" in
      "" | data:* | http:* | https:* | //* | /* | "#"*) continue ;;
    esac
    ref="${ref%%\#*}"
    ref="${ref%%\?*}"
    if [[ -n "${ref}" ]]; then
      printf '%s\n' "${ref}"
    fi
  done | sort -u
}

# copy_rel <src-root> <dst-root> <relative-path>: copy a file, keeping its path.
copy_rel() {
  local src_root="$1" dst_root="$2" rel="$3"
  [[ -f "${src_root}/${rel}" ]] || die "missing in package: ${rel}"
  mkdir -p "${dst_root}/$(dirname "${rel}")"
  cp "${src_root}/${rel}" "${dst_root}/${rel}"
}

STAGE="${TMP_DIR}/stage"
mkdir -p "${STAGE}"

# --- htmx --------------------------------------------------------------------
HTMX_PKG="${TMP_DIR}/htmx"
fetch htmx.org "${HTMX_VERSION}" "${HTMX_PKG}"
mkdir -p "${STAGE}/htmx"
cp "${HTMX_PKG}/dist/htmx.min.js" "${STAGE}/htmx/htmx.min.js"
cp "${HTMX_PKG}/LICENSE" "${STAGE}/htmx/LICENSE"
printf '%s\n' "${HTMX_VERSION}" > "${STAGE}/htmx/VERSION"

# --- USWDS -------------------------------------------------------------------
USWDS_PKG="${TMP_DIR}/uswds"
fetch @uswds/uswds "${USWDS_VERSION}" "${USWDS_PKG}"
USWDS_DIST="${USWDS_PKG}/dist"
USWDS_STAGE="${STAGE}/uswds"
mkdir -p "${USWDS_STAGE}"

for f in css/uswds.min.css js/uswds.min.js js/uswds-init.min.js; do
  copy_rel "${USWDS_DIST}" "${USWDS_STAGE}" "${f}"
done

# Fonts and images: copy only what uswds.min.css references, keeping the
# dist/ layout so the CSS's relative url(../fonts/...) and url(../img/...)
# references still resolve.
while IFS= read -r ref; do
  resolved="$(realpath -m "${USWDS_DIST}/css/${ref}")"
  case "${resolved}" in
    "${USWDS_DIST}"/*) ;;
    *) die "uswds.min.css references a file outside dist/: ${ref}" ;;
  esac
  rel="${resolved#"${USWDS_DIST}/"}"
  if [[ -f "${USWDS_DIST}/${rel}" ]]; then
    copy_rel "${USWDS_DIST}" "${USWDS_STAGE}" "${rel}"
  else
    printf 'WARNING: uswds.min.css references %s, which is not in the package\n' "${ref}" >&2
  fi
done < <(css_local_refs "${USWDS_DIST}/css/uswds.min.css")

# Images used from HTML (icon sprite, banner), not from the CSS.
for f in img/sprite.svg img/us_flag_small.png img/icon-dot-gov.svg img/icon-https.svg; do
  if [[ -f "${USWDS_DIST}/${f}" ]]; then
    copy_rel "${USWDS_DIST}" "${USWDS_STAGE}" "${f}"
  else
    printf 'WARNING: %s not in @uswds/uswds@%s; skipped\n' "${f}" "${USWDS_VERSION}" >&2
  fi
done

if [[ -f "${USWDS_PKG}/LICENSE.md" ]]; then
  cp "${USWDS_PKG}/LICENSE.md" "${USWDS_STAGE}/LICENSE.md"
elif [[ -f "${USWDS_PKG}/LICENSE" ]]; then
  cp "${USWDS_PKG}/LICENSE" "${USWDS_STAGE}/LICENSE.md"
else
  die "@uswds/uswds@${USWDS_VERSION} has no LICENSE.md or LICENSE"
fi
printf '%s\n' "${USWDS_VERSION}" > "${USWDS_STAGE}/VERSION"

# --- Install into the repository ---------------------------------------------
# Replace the whole folders so files dropped upstream do not linger.
mkdir -p "${VENDOR_DIR}"
for name in htmx uswds; do
  rm -rf "${VENDOR_DIR:?}/${name}"
  cp -R "${STAGE}/${name}" "${VENDOR_DIR}/${name}"
done

# --- Verify ------------------------------------------------------------------
CSS="${VENDOR_DIR}/uswds/css/uswds.min.css"
log "Checking url(...) references in ${CSS#"${REPO_ROOT}/"}"
missing=0
checked=0
while IFS= read -r ref; do
  checked=$((checked + 1))
  if [[ ! -f "${VENDOR_DIR}/uswds/css/${ref}" ]]; then
    printf 'MISSING: %s\n' "${ref}" >&2
    missing=$((missing + 1))
  fi
done < <(css_local_refs "${CSS}")

# External URLs in the CSS would be fetched at runtime (e.g. from a CDN).
external="$(css_urls "${CSS}" | grep -E '^(https?:)?//' | sort -u || true)"
if [[ -n "${external}" ]]; then
  printf 'EXTERNAL url() references in uswds.min.css:\n%s\n' "${external}" >&2
fi

if (( missing > 0 )); then
  die "${missing} of ${checked} url() references in uswds.min.css do not resolve"
fi
[[ -z "${external}" ]] || die "uswds.min.css references external URLs"
log "All ${checked} relative url() references resolve"

log "Vendored htmx.org@${HTMX_VERSION} and @uswds/uswds@${USWDS_VERSION}"
log "Total size of ${VENDOR_DIR#"${REPO_ROOT}/"}: $(du -sh "${VENDOR_DIR}" | cut -f1) ($(du -sb "${VENDOR_DIR}" | cut -f1) bytes)"
