# shellcheck shell=bash
# Sourced by .ci/run and .ci/adapters: the upstream checkouts the conformance tests import from.
# Each HARNESS_<NAME>_REPO already set (a user's own git checkout) is kept; otherwise it points at
# ../shared/upstream/<folder> (relative to the repository root) when that folder exists.
# upstream_var NAME -> the variable of an adapter; upstream_present NAME -> 0 when its checkout exists.

upstream_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/upstream"

declare -A UPSTREAM_VAR=(
  [lens]=HARNESS_LENS_REPO [lisa]=HARNESS_LISA_REPO [glamm]=HARNESS_GLAMM_REPO
  [segzero]=HARNESS_SEGZERO_REPO [sam3]=HARNESS_SAM3_REPO [sa2va]=HARNESS_SA2VA_REPO
  [unipixel]=HARNESS_UNIPIXEL_REPO [evfsam]=HARNESS_EVFSAM_REPO
)
declare -A UPSTREAM_FOLDER=(
  [lens]=hustvl__LENS [lisa]=dvlab-research__LISA [glamm]=mbzuai-oryx__groundingLMM
  [segzero]=dvlab-research__Seg-Zero [sam3]=facebookresearch__sam3 [sa2va]=bytedance__Sa2VA
  [unipixel]=PolyU-ChenLab__UniPixel [evfsam]=hustvl__EVF-SAM
)

for _name in "${!UPSTREAM_VAR[@]}"; do
  _var=${UPSTREAM_VAR[$_name]}
  _dir="$upstream_root/${UPSTREAM_FOLDER[$_name]}"
  if [ -z "${!_var:-}" ] && [ -d "$_dir" ]; then
    export "$_var=$(cd "$_dir" && pwd)"
  fi
done
unset _name _var _dir

upstream_var() { echo "${UPSTREAM_VAR[$1]:-}"; }
upstream_present() {
  local var
  var=$(upstream_var "$1")
  [ -n "$var" ] && [ -n "${!var:-}" ] && [ -d "${!var}" ]
}
