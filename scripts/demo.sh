#!/usr/bin/env bash
# A self-contained tour of cryptpt: a throwaway vault with a sample policy,
# one encrypted document and one plaintext media file, what the vault holds,
# status and explain, then unmount and clean up.
set -euo pipefail
bin=$(readlink -f "${1:-bin/cryptpt}")
work=$(mktemp -d /var/tmp/cryptpt-demo.XXXXXX)
vault=$work/vault mnt=$work/Private
cleanup() {
	if grep -qs " $mnt " /proc/self/mountinfo; then "$bin" unmount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

mkdir -p "$mnt"
printf 'demo password\n' > "$work/password"
cat > "$work/config.toml" <<TOML
[vault]
backing    = "$vault"
mountpoint = "$mnt"

[policy]
# Media stays plaintext (native speed through kernel passthrough);
# everything else is encrypted. The last matching pattern wins.
plaintext = ["Videos/", "!Videos/private/"]
TOML

say "1. Create a vault (a cheap KDF for the demo; real vaults use ~1 s of Argon2id)"
show "$bin" init --passfile "$work/password" --kdf-time 1 --kdf-memory 8192 "$vault"

say "2. The policy, from $work/config.toml"
sed -n '/\[policy\]/,$p' "$work/config.toml"

say "3. Mount it (the daemon goes to the background once the mount works)"
show "$bin" mount --config "$work/config.toml" --passfile "$work/password"

say "4. Write a document and a video through the mount"
mkdir -p "$mnt/Documents" "$mnt/Videos"
echo "Dear diary, the launch code is 0000." > "$mnt/Documents/diary.txt"
head -c 3000000 /dev/urandom > "$mnt/Videos/holiday.mp4"
show ls -l "$mnt" "$mnt/Documents" "$mnt/Videos"
show cat "$mnt/Documents/diary.txt"

say "5. What the vault holds: encrypted names and bytes beside plaintext ones"
(cd "$vault" && find . -path ./~~vault.toml -prune -o -print | sort | sed 's/^/    /')
diary=$(find "$vault" -path '*~~c*' -type f -size -200c | head -1)
printf 'The diary in the vault (%s), first bytes:\n' "${diary#$vault/}"
od -A d -t x1 "$diary" | head -3
if grep -rq "launch code" "$vault"; then echo "!! plaintext found in the vault"; exit 1; fi
echo 'grep -r "launch code" in the vault: no match (the document is encrypted)'
cmp "$mnt/Videos/holiday.mp4" "$vault/Videos/holiday.mp4" && echo "Videos/holiday.mp4 in the vault is byte-identical to what was written (plaintext)"

say "6. Read the video through the mount, then ask the daemon what happened"
cat "$mnt/Videos/holiday.mp4" > /dev/null
show "$bin" status "$mnt"

say "7. Why is each path what it is?"
show "$bin" explain --config "$work/config.toml" "$mnt/Documents/diary.txt" "$mnt/Videos/holiday.mp4" Videos/private/secret.mp4

say "8. Unmount"
show "$bin" unmount "$mnt"
echo
echo "Done. The tour's files lived in $work and are removed now."
