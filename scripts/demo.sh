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
# Run from the tour's directory with cryptpt on PATH, so commands read short.
PATH=$(dirname "$bin"):$PATH
cd "$work"
echo "The tour works in $work (removed at the end)."

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
show cryptpt init --passfile password --kdf-time 2 --kdf-memory 19456 vault

say "2. The policy, from config.toml"
sed -n '/\[policy\]/,$p' config.toml

say "3. Mount it (the daemon goes to the background once the mount works)"
show cryptpt mount --config config.toml --passfile password

say "4. Write a document and a video through the mount"
mkdir -p Private/Documents Private/Videos
echo "Dear diary, the launch code is 0000." > Private/Documents/diary.txt
head -c 3000000 /dev/urandom > Private/Videos/holiday.mp4
show ls -l Private/Documents Private/Videos
show cat Private/Documents/diary.txt

say "5. What the vault holds: encrypted names and bytes beside plaintext ones"
(cd "$vault" && find . -path ./~~vault.toml -prune -o -print | sort | sed 's/^/    /')
diary=$(find "$vault" -path '*~~c*' -type f -size -200c | head -1)
printf 'The diary in the vault (%s), first bytes:\n' "${diary#$vault/}"
od -A d -t x1 "$diary" | head -3
if grep -rq "launch code" "$vault"; then echo "!! plaintext found in the vault"; exit 1; fi
echo 'grep -r "launch code" in the vault: no match (the document is encrypted)'
cmp Private/Videos/holiday.mp4 vault/Videos/holiday.mp4 && echo "Videos/holiday.mp4 in the vault is byte-identical to what was written (plaintext)"

say "6. Read the video through the mount, then ask the daemon what happened"
cat Private/Videos/holiday.mp4 > /dev/null
show cryptpt status Private
echo "(The 3 MB video was written and read by the kernel itself: the daemon saw no plaintext"
echo " read or write. Only the encrypted diary went through the daemon's crypto.)"

say "7. Why is each path what it is?"
show cryptpt explain --config config.toml Private/Documents/diary.txt Private/Videos/holiday.mp4 Videos/private/secret.mp4

say "8. Unmount"
show cryptpt unmount Private
echo
echo "Done. The tour's files lived in $work and are removed now."
