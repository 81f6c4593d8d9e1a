#!/bin/bash
# manpage.sh BIN VERSION: writes the man page cryptpt.1 to stdout, built from
# "BIN --help" and "BIN COMMAND --help", so it never says more or less than
# the program does. "make man" (and "make install") runs it.
set -euo pipefail
bin=$1
version=${2:-dev}

# roff-escape a line of help text: backslashes, and a leading dot or quote.
esc() { sed -e 's/\\/\\e/g' -e 's/^\([.'"'"']\)/\\\&\1/' -e 's/-/\\-/g'; }

cat <<ROFF
.TH CRYPTPT 1 "" "cryptpt $version" "User Commands"
.SH NAME
cryptpt \\- an encrypted home directory with native-speed plaintext paths
.SH SYNOPSIS
ROFF
"$bin" --help 2>&1 | awk '/^  cryptpt /{ sub(/^  /, ""); print }' | while IFS= read -r line; do
	printf '%s\n.br\n' "$(printf '%s' "$line" | esc)"
done
cat <<'ROFF'
.SH DESCRIPTION
cryptpt is a FUSE filesystem that mounts an encrypted vault directory. Every
file is encrypted at rest except the paths the policy marks plaintext, which are
stored as they are and served through the kernel's FUSE passthrough.
Passwords come from the terminal (no echo), \fB\-\-passfile\fR FILE or \fB\-\-extpass\fR CMD.
.SH COMMANDS
ROFF
cmds=$("$bin" --help 2>&1 | awk '/^  cryptpt /{ if (!seen[$2]++) print $2 }')
# helptoroff renders the --help of one command as a man page section.
helptoroff() {
	awk '
		function esc(s) { gsub(/\\/, "\\e", s); gsub(/-/, "\\-", s); if (s ~ /^[.'"'"']/) s = "\\&" s; return s }
		/^Usage: / { sub(/^Usage: /, ""); print ".B " esc($0); print ".PP"; next }
		/^Usage:$/ { next }
		/^Options:/ { next }
		/^  cryptpt / { s = $0; sub(/^  /, "", s); print esc(s); print ".br"; next }
		/^  -/ {
			s = $0; sub(/^  /, "", s)
			desc = ""
			if (index(s, "\t") > 0) { desc = substr(s, index(s, "\t") + 1); s = substr(s, 1, index(s, "\t") - 1) }
			n = split(s, w, " ")
			flag = "\\fB\\-" esc(w[1]) "\\fR"
			if (n > 1) flag = flag " \\fI" esc(w[2]) "\\fR"
			print ".TP"; print flag
			if (desc != "") print esc(desc)
			next
		}
		/^    \t/ { s = $0; sub(/^    \t/, "", s); print esc(s); next }
		/^$/ { print ".PP"; next }
		{ print esc($0) }
	'
}
for c in $cmds; do
	[ "$c" = version ] && continue
	help=$("$bin" "$c" --help 2>&1 || true)
	printf '.SS %s\n' "$c"
	printf '%s\n' "$help" | helptoroff
	# Subcommands, listed as "  cryptpt CMD SUB ..." in the command's help.
	for sub in $(printf '%s\n' "$help" | awk -v c="$c" '$1 == "cryptpt" && $2 == c && $3 ~ /^[a-z]+$/ { print $3 }'); do
		printf '.SS "%s %s"\n' "$c" "$sub"
		"$bin" "$c" "$sub" --help 2>&1 | helptoroff || true
	done
done
cat <<'ROFF'
.SH FILES
.TP
\fI$XDG_CONFIG_HOME/cryptpt/config.toml\fR
the policy and the default vault paths
.TP
\fI/home/.cryptpt/USER\fR
the vault of an encrypted home made by \fBcryptpt home init\fR
.SH EXIT STATUS
0 on success, 1 on an error the user can fix, 2 on a bad command line, 3 when
\fBfsck\fR found damage.
.SH SEE ALSO
\fBfusermount3\fR(1), \fBmount.fuse3\fR(8), \fBpam_exec\fR(8), \fBpam\-auth\-update\fR(8)
ROFF
