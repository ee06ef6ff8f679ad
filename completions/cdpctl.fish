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
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "calc-audiences" -d 'Recalculate rule-based contact groups for the entities that changed'
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
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l group -d 'Recalculate only this group, in full (repeatable; leaves the change journal alone)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l now -d 'Reference time for activity windows, RFC 3339 (default: now)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l interval -d 'Pause between --watch runs (e.g. 10s, 500ms, 1m)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l define -d 'Validate and save group definitions from a JSON file (insert or replace), then stop' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l explain -d 'Print the SQL a run executes for this group and stop' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l all -d 'Recalculate every group for every entity (consumes the change journal too)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l dry-run -d 'Evaluate and report the membership changes without applying them'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l watch -d 'Repeat the run every --interval until Ctrl-C or SIGTERM'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l check -d 'Validate every stored group (unknown attributes, operators, SQL errors) and stop'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l list -d 'List the groups with their member counts and stop'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo calc-audiences completions help" -f -a "init" -d 'Create or upgrade every schema, table, index and trigger (idempotent)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo calc-audiences completions help" -f -a "status" -d 'Backlogs at a glance: what exists and what is waiting'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo calc-audiences completions help" -f -a "demo" -d 'Seed a realistic sample CDP and run the pipeline end to end'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo calc-audiences completions help" -f -a "calc-audiences" -d 'Recalculate rule-based contact groups for the entities that changed'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo calc-audiences completions help" -f -a "completions" -d 'Print shell completions'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status demo calc-audiences completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
