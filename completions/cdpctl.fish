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
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "stitch" -d 'Profile stitching: resolve queued events into customer entities; `explain` shows why'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "demo" -d 'Seed a realistic sample CDP and run the pipeline end to end'
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
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l batch-size -d 'Most queued events per batch (one transaction); default: stitching.batch_size' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l max-batches -d 'Stop after N batches; the rest stays queued for the next run' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l from-scratch -d 'Forget every stitching result and stitch all events from the beginning (asks first)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l dry-run -d 'Show what would run (full or incremental, queued events); change nothing'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -f -a "explain" -d 'Why items share an entity: the entity, its identifiers, its merges, and for two items the shortest chain of events and identifiers linking them'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from help" -f -a "explain" -d 'Why items share an entity: the entity, its identifiers, its merges, and for two items the shortest chain of events and identifiers linking them'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
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
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status stitch demo completions help" -f -a "init" -d 'Create or upgrade every schema, table, index and trigger (idempotent)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status stitch demo completions help" -f -a "status" -d 'Backlogs at a glance: what exists and what is waiting'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status stitch demo completions help" -f -a "stitch" -d 'Profile stitching: resolve queued events into customer entities; `explain` shows why'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status stitch demo completions help" -f -a "demo" -d 'Seed a realistic sample CDP and run the pipeline end to end'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status stitch demo completions help" -f -a "completions" -d 'Print shell completions'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status stitch demo completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and __fish_seen_subcommand_from stitch" -f -a "explain" -d 'Why items share an entity: the entity, its identifiers, its merges, and for two items the shortest chain of events and identifiers linking them'
