#!/usr/bin/env bash
# Size check: reports Rust source files over 600 lines and functions over 80 lines.
#
#   scripts/size-check.sh [--exclude PATH]... PATH...
#
# A PATH is a .rs file or a directory (searched for .rs files). A function is counted from the
# line of its `fn` keyword to the line of the brace that closes its body (tests included;
# a function nested in another counts in both). Strings, characters and comments are skipped
# when matching braces. Exits 1 if anything is over a limit, 2 on bad usage.
set -euo pipefail

max_file=600
max_fn=80
excludes=()
paths=()
while [ $# -gt 0 ]; do
  case "$1" in
    --exclude) [ $# -ge 2 ] || { echo "--exclude needs a path" >&2; exit 2; }
               excludes+=("${2%/}"); shift 2 ;;
    --exclude=*) excludes+=("${1#--exclude=}"); shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) paths+=("$1"); shift ;;
  esac
done
[ ${#paths[@]} -gt 0 ] || { echo "usage: $0 [--exclude PATH]... PATH..." >&2; exit 2; }

files=()
for p in "${paths[@]}"; do
  if [ -d "$p" ]; then
    while IFS= read -r f; do files+=("$f"); done < <(find "$p" -name '*.rs' -type f | sort)
  elif [ -f "$p" ]; then
    files+=("$p")
  else
    echo "no such file or directory: $p" >&2; exit 2
  fi
done
kept=()
for f in "${files[@]}"; do
  skip=no
  for x in "${excludes[@]+"${excludes[@]}"}"; do
    case "$f" in "$x"|"$x"/*) skip=yes ;; esac
  done
  [ "$skip" = yes ] || kept+=("$f")
done
[ ${#kept[@]} -gt 0 ] || { echo "size check: no .rs files" >&2; exit 2; }

LC_ALL=C awk -v max_file="$max_file" -v max_fn="$max_fn" '
# code(line): the line with comments, strings and character literals blanked out, keeping
# the positions of everything else. State (block comments, strings) carries across lines.
function code(line,    out, i, n, c, c2, rest, m) {
  out = ""; n = length(line); i = 1
  while (i <= n) {
    c = substr(line, i, 1); c2 = substr(line, i, 2)
    if (blk > 0) {
      if (c2 == "*/") { blk--; out = out "  "; i += 2; continue }
      if (c2 == "/*") { blk++; out = out "  "; i += 2; continue }
      out = out " "; i++; continue
    }
    if (str) {
      if (c == "\\") { out = out "  "; i += 2; continue }
      if (c == "\"") str = 0
      out = out " "; i++; continue
    }
    if (raw != "") {
      if (substr(line, i, length(raw)) == raw) { out = out sprintf("%*s", length(raw), ""); i += length(raw); raw = ""; continue }
      out = out " "; i++; continue
    }
    if (c2 == "//") break
    if (c2 == "/*") { blk = 1; out = out "  "; i += 2; continue }
    rest = substr(line, i)
    if ((i == 1 || substr(line, i - 1, 1) !~ /[A-Za-z0-9_]/) && match(rest, /^b?r#*"/)) {
      m = substr(rest, 1, RLENGTH); sub(/^b?r/, "", m); sub(/"$/, "", m)
      raw = "\"" m; out = out sprintf("%*s", RLENGTH, ""); i += RLENGTH; continue
    }
    if (c == "\"") { str = 1; out = out " "; i++; continue }
    if (c == "\x27") {
      if (match(rest, /^\x27\\[^\x27]*\x27/) || match(rest, /^\x27[^\x27\\]\x27/) \
          || match(rest, /^\x27[\x80-\xff]+\x27/)) {
        out = out sprintf("%*s", RLENGTH, ""); i += RLENGTH; continue
      }
      out = out c; i++; continue   # a lifetime or label
    }
    out = out c; i++
  }
  return out
}
FNR == 1 { blk = 0; str = 0; raw = ""; depth = 0; paren = 0; pending = 0; top = 0 }
{
  line = code($0)
  # where this line starts a function: position of `fn name`
  fnpos = 0; fnname = ""
  if (match(line, /(^|[^A-Za-z0-9_])fn[ \t]+[A-Za-z_][A-Za-z0-9_]*/)) {
    fnpos = RSTART + (substr(line, RSTART, 1) == "f" && substr(line, RSTART, 2) == "fn" ? 0 : 1)
    fnname = substr(line, RSTART, RLENGTH); sub(/^.*fn[ \t]+/, "", fnname)
  }
  n = length(line)
  for (i = 1; i <= n; i++) {
    if (i == fnpos) { pending = 1; pname = fnname; pline = FNR; paren = 0 }
    c = substr(line, i, 1)
    if (pending) {
      if (c == "(" || c == "[" || c == "<") paren++
      else if ((c == ")" || c == "]") && paren > 0) paren--
      else if (c == ">" && paren > 0 && substr(line, i - 1, 1) != "-") paren--
      else if (c == ";" && paren == 0) pending = 0
    }
    if (c == "{") {
      depth++
      if (pending && paren == 0) { top++; sname[top] = pname; sline[top] = pline; sdepth[top] = depth; pending = 0 }
    } else if (c == "}") {
      if (top > 0 && sdepth[top] == depth) {
        len = FNR - sline[top] + 1
        if (len > max_fn) { printf "%s:%d: fn %s is %d lines (max %d)\n", FILENAME, sline[top], sname[top], len, max_fn; bad = 1 }
        top--
      }
      depth--
    }
  }
}
ENDFILE { if (FNR > max_file) { printf "%s: %d lines (max %d)\n", FILENAME, FNR, max_file; bad = 1 } }
END { exit bad ? 1 : 0 }
' "${kept[@]}"
