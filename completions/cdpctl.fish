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
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "migrate-audiences" -d 'Move campaign audiences from contact references to contact ids (through DynamoDB)'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "membership" -d 'Which of these campaigns contain a contact (reads both audience structures)'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "demo" -d 'Seed a realistic sample CDP and run the pipeline end to end'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "flush-segment" -d 'Drain the queue of one-at-a-time segment add/remove requests in coalesced batches'
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
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l campaign -d 'Campaign to migrate (repeatable)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l min-references -d 'Only campaigns with at least N legacy references' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l max-references -d 'Only campaigns with at most N legacy references' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l concurrency -d 'BatchGetItem requests in flight [default: audiences.migration.concurrency, 8]' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l batch-size -d 'References per transaction and checkpoint [default: audiences.migration.batch_size, 5000]' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l all -d 'Every campaign that has rows in the legacy contact-reference table'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l restart -d 'Start the chosen campaigns over from their first reference (rows merge, nothing is duplicated)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l drop-source -d 'After verification, delete the migrated campaigns\' legacy rows (asks first)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l dry-run -d 'Print per campaign the references left and the DynamoDB reads needed; change nothing'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -l contact-id -d 'The contact\'s id' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -l contact-reference -d 'The contact\'s reference; alone, its contact id is looked up in DynamoDB' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -l campaign -d 'Campaign to check (repeatable, or comma-separated)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -s V -l version -d 'Print version'
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
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l segment -d 'Flush only this segment' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l batch-size -d 'Requests claimed per batch (one transaction); default segments.batch_size or 50000' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l max-batches -d 'Stop after this many batches (the rest stays queued)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l interval -d 'Pause between rounds of --watch, e.g. 10s, 500ms, 2m; default segments.interval_seconds or 10s' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l watch -d 'Keep flushing every --interval until SIGTERM/Ctrl-C (the current batch finishes first)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l dry-run -d 'Coalesce and report what would be flushed; change and send nothing'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status migrate-audiences membership demo flush-segment completions help" -f -a "init" -d 'Create or upgrade every schema, table, index and trigger (idempotent)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status migrate-audiences membership demo flush-segment completions help" -f -a "status" -d 'Backlogs at a glance: what exists and what is waiting'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status migrate-audiences membership demo flush-segment completions help" -f -a "migrate-audiences" -d 'Move campaign audiences from contact references to contact ids (through DynamoDB)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status migrate-audiences membership demo flush-segment completions help" -f -a "membership" -d 'Which of these campaigns contain a contact (reads both audience structures)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status migrate-audiences membership demo flush-segment completions help" -f -a "demo" -d 'Seed a realistic sample CDP and run the pipeline end to end'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status migrate-audiences membership demo flush-segment completions help" -f -a "flush-segment" -d 'Drain the queue of one-at-a-time segment add/remove requests in coalesced batches'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status migrate-audiences membership demo flush-segment completions help" -f -a "completions" -d 'Print shell completions'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status migrate-audiences membership demo flush-segment completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
