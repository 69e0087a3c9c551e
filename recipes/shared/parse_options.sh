# Kaldi-style option parsing for recipes. Source it after the defaults:
#   stage=0; nj=2; . recipes/shared/parse_options.sh
# Each "--name value" (or "--name=value") sets the shell variable "name" (dashes
# become underscores); the variable must already have a default, so a typo is an
# error, not a silently ignored option. "--help" prints the variables and exits.
# What is left (positional arguments) stays in "$@".

_po_usage() {
  echo "usage: $0 [options]" >&2
  echo "options (current values):" >&2
  for _po_v in $_po_known; do
    printf '  --%s %s\n' "${_po_v//_/-}" "${!_po_v}" >&2
  done
}

_po_known=$(set -o posix; set | sed -n 's/^\([a-z][a-z0-9_]*\)=.*/\1/p')
while (($#)); do
  case "$1" in
    --help|-h) _po_usage; exit 0 ;;
    --*=*) _po_name="${1%%=*}"; _po_value="${1#*=}"; shift ;;
    --*)
      _po_name="$1"
      if (($# < 2)); then echo "$0: option $1 needs a value" >&2; exit 1; fi
      _po_value="$2"; shift 2 ;;
    *) break ;;
  esac
  _po_name="${_po_name#--}"
  _po_name="${_po_name//-/_}"
  if ! [[ "$_po_name" =~ ^[a-z][a-z0-9_]*$ ]] || [[ " $(echo $_po_known) " != *" $_po_name "* ]]; then
    echo "$0: unknown option --${_po_name//_/-}" >&2
    _po_usage
    exit 1
  fi
  printf -v "$_po_name" '%s' "$_po_value"
done
unset _po_name _po_value
