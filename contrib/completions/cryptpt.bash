# bash completion for cryptpt.
#
# Install: copy to /usr/share/bash-completion/completions/cryptpt (system) or
# ~/.local/share/bash-completion/completions/cryptpt (user), or source it from
# ~/.bashrc.
#
# Commands and options are read from "cryptpt --help" and
# "cryptpt COMMAND --help" of the binary being completed, so this file never
# falls behind the program.

# _cryptpt_help_commands prints the commands listed by "cryptpt --help".
_cryptpt_help_commands() {
    "$1" --help 2>/dev/null | awk '$1 == "cryptpt" && $2 ~ /^[a-z]+$/ { print $2 }'
}

# _cryptpt_help_options prints the options of a command, as --name (or -x
# for one-letter names).
_cryptpt_help_options() {
    "$1" "$2" --help 2>&1 | awk '/^  -[a-zA-Z]/ { n = substr($1, 2); print (length(n) == 1 ? "-" : "--") n }'
}

# _cryptpt_mounts prints the mountpoints of cryptpt mounts.
_cryptpt_mounts() {
    awk '$3 == "fuse.cryptpt" { gsub(/\\040/, " ", $2); print $2 }' /proc/self/mounts 2>/dev/null
}

_cryptpt() {
    local cur prev prog cmd
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    prog=${COMP_WORDS[0]}
    COMPREPLY=()

    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "$(_cryptpt_help_commands "$prog") --help --version" -- "$cur"))
        return
    fi
    cmd=${COMP_WORDS[1]}

    case $prev in
        --passfile | --new-passfile | --config | --log | --recovery-key-file)
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur"))
            return
            ;;
        --extpass)
            COMPREPLY=($(compgen -c -- "$cur"))
            return
            ;;
        --kdf-time | --kdf-memory)
            return
            ;;
    esac

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_cryptpt_help_options "$prog" "$cmd") --help" -- "$cur"))
        return
    fi

    compopt -o filenames 2>/dev/null
    case $cmd in
        unmount | umount | status | migrate)
            local IFS=$'\n'
            COMPREPLY=($(compgen -W "$(_cryptpt_mounts)" -- "$cur") $(compgen -d -- "$cur"))
            ;;
        explain)
            COMPREPLY=($(compgen -f -- "$cur"))
            ;;
        init | mount | passwd | fsck)
            COMPREPLY=($(compgen -d -- "$cur"))
            ;;
    esac
}

complete -F _cryptpt cryptpt
