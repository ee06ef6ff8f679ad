# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cdpctl_global_optspecs
    string join \n config= database-url= format= y/yes q/quiet v/verbose h/help V/version
end

function __fish_cdpctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cdpctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cdpctl_using_subcommand
    set -l cmd (__fish_cdpctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cdpctl -n "__fish_cdpctl_needs_command" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_needs_command" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_needs_command" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_needs_command" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "init" -d 'Create or upgrade every schema, table, index and trigger (idempotent)'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "status" -d 'Backlogs at a glance: what exists and what is waiting'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "demo" -d 'Seed a realistic sample CDP and run the pipeline end to end'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "history-at" -d 'A customer\'s campaigns as they were at a moment; --diff-from, --timeline'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "history-import" -d 'Load existing campaign history exports (NDJSON), idempotently'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -l dry-run -d 'Print the SQL that would run and change nothing'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l customers -d 'Number of customers to generate' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l seed -d 'Random seed: the same seed gives the same data' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l keep -d 'Keep the throwaway cluster running (and print how to connect)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l customer -d 'Customer whose campaigns to show' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l at -d 'The moment to look at: RFC 3339, "YYYY-MM-DD HH:MM[:SS]" (in --tz), a date or "now"' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l campaign -d 'Only these campaigns (space- or comma-separated, or repeat the flag)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l fields -d 'Fields (columns) to show, comma-separated; "all" for the whole snapshot [default: history.default_fields: name,status,priority,updated_at]' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l diff-from -d 'Per campaign, the fields that changed between TIME0 and --at' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l tz -d 'Time zone (IANA name) for times without an offset and for display [default: history.time_zone or UTC]' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l include-deleted -d 'Show deleted campaigns too'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l timeline -d 'Every change of one campaign (--campaign ID), oldest first, up to --at if given'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l reject-file -d 'Where --skip-invalid writes bad lines [default: FILE.rejected, or history-import.rejected.ndjson for stdin]' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l skip-invalid -d 'Write bad lines to the reject file and import the rest (default: a bad line fails the import and nothing is imported)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l dry-run -d 'Parse, stage and count, then roll back: nothing is imported'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo history-at history-import completions help" -f -a "init" -d 'Create or upgrade every schema, table, index and trigger (idempotent)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo history-at history-import completions help" -f -a "status" -d 'Backlogs at a glance: what exists and what is waiting'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo history-at history-import completions help" -f -a "demo" -d 'Seed a realistic sample CDP and run the pipeline end to end'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo history-at history-import completions help" -f -a "history-at" -d 'A customer\'s campaigns as they were at a moment; --diff-from, --timeline'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo history-at history-import completions help" -f -a "history-import" -d 'Load existing campaign history exports (NDJSON), idempotently'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo history-at history-import completions help" -f -a "completions" -d 'Print shell completions'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo history-at history-import completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
