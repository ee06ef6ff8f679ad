# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cdpctl_global_optspecs
    string join \n config= database-url= format= region= y/yes q/quiet v/verbose h/help V/version
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
complete -c cdpctl -n "__fish_cdpctl_needs_command" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_needs_command" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "init" -d 'Create or upgrade every schema, table, index and trigger (idempotent)'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "status" -d 'Backlogs at a glance: what exists and what is waiting'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "go-production" -d 'Switch the public views to the cdpctl tables, keeping backups (checked, atomic)'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "rollback" -d 'Undo go-production: restore the backups and the saved view definitions'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "migrate-audiences" -d 'Move campaign audiences from contact references to contact ids (through DynamoDB)'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "membership" -d 'Which of these campaigns contain a contact (reads both audience structures)'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "stitch" -d 'Profile stitching: resolve queued events into customer entities; `explain` shows why'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "calc-attrs" -d 'Calculate customer attributes for entities with new activity'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "reset-context" -d 'Mark context keys stale (or recompute them now)'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "demo" -d 'Seed a realistic sample CDP and run the pipeline end to end'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "history-at" -d 'A customer\'s campaigns as they were at a moment; --diff-from, --timeline'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "history-import" -d 'Load existing campaign history exports (NDJSON), idempotently'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "flush-segment" -d 'Drain the queue of one-at-a-time segment add/remove requests in coalesced batches'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "serve" -d 'HTTP ingest replacing the mparticle-audiences-batch server: durable queue, flushes to Split'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "calc-audiences" -d 'Recalculate rule-based contact groups for the entities that changed'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "man" -d 'Print a manual page (or write them all with --out-dir)'
complete -c cdpctl -n "__fish_cdpctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand init" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
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
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -l check -d 'Check the `monitoring` thresholds of the config, pending or unknown migrations and the last run of every job; exit 1 naming the failing items'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand status" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -l lock-timeout -d 'How long to wait for locks on the objects being replaced, e.g. 500ms, 5s (default: production_switch.lock_timeout_ms, 5s)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -l check -d 'Run the pre-flight checks only; change nothing (exit 1 when one fails)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -l dry-run -d 'Print the checks, the plan and the SQL; change nothing'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -l allow-backlog -d 'Switch even when stitching or attribute calculation has a backlog'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -l sync-pivot -d 'Only bring pivoted_customer_attributes in step with the attribute definitions (in production; calc-attrs does this after each run)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand go-production" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand rollback" -l lock-timeout -d 'How long to wait for locks on the objects being replaced, e.g. 500ms, 5s (default: production_switch.lock_timeout_ms, 5s)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand rollback" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand rollback" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand rollback" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand rollback" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand rollback" -l dry-run -d 'Print the checks, the plan and the SQL; change nothing'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand rollback" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand rollback" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand rollback" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand rollback" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand rollback" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l campaign -d 'Campaign to migrate (repeatable)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l min-references -d 'Only campaigns with at least N legacy references' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l max-references -d 'Only campaigns with at most N legacy references' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l concurrency -d 'BatchGetItem requests in flight [default: audiences.migration.concurrency, 8]' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l batch-size -d 'References per transaction and checkpoint [default: audiences.migration.batch_size, 5000]' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand migrate-audiences" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
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
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand membership" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l batch-size -d 'Most queued events per batch (one transaction); default: stitching.batch_size' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l max-batches -d 'Stop after N batches; the rest stays queued for the next run' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and not __fish_seen_subcommand_from explain help" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
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
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from explain" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from help" -f -a "explain" -d 'Why items share an entity: the entity, its identifiers, its merges, and for two items the shortest chain of events and identifiers linking them'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand stitch; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l attribute -d 'Only this attribute (repeatable); entities stay due for the others' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l entity -d 'Compute one entity and print its values (writes nothing without --write)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l batch-size -d 'Entities per batch (default: attributes.batch_size, 100000)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l all -d 'Recalculate every entity, keeping stored values until replaced'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l from-scratch -d 'Delete every attribute value, then calculate every entity (asks first)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l write -d 'With --entity: store the computed values'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l check -d 'Validate every definition and context query against the database; writes nothing'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l refresh-cache -d 'Rebuild the cache tables even if they are fresh'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l no-cache -d 'Leave the cache tables alone'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -l dry-run -d 'Evaluate and report what would change; write nothing'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-attrs" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand reset-context" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand reset-context" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand reset-context" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand reset-context" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand reset-context" -l now -d 'Recompute them immediately instead of on the next calc-attrs'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand reset-context" -l dry-run -d 'Show which keys would be reset; change nothing'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand reset-context" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand reset-context" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand reset-context" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand reset-context" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand reset-context" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l customers -d 'Number of customers to generate' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l seed -d 'Random seed: the same seed gives the same data' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l keep -d 'Keep the throwaway cluster running (and print how to connect)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -l reset -d 'Into a database that already holds customer events: drop the CDP schemas (with everything in them) first and seed anew'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand demo" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l customer -d 'Customer whose campaigns to show' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l at -d 'The moment to look at: RFC 3339; "YYYY-MM-DD HH:MM[:SS]", a date or HH:MM[:SS] (today) in --tz; now, today, yesterday [HH:MM]; "2h ago", "30m ago", "3 days ago", "1 week ago"' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l campaign -d 'Only these campaigns (space- or comma-separated, or repeat the flag)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l fields -d 'Fields (columns) to show, comma-separated; "all" for the whole snapshot [default: history.default_fields: name,status,priority,updated_at]' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l diff-from -d 'Per campaign, the fields that changed between TIME0 and --at, and who changed them' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l tz -d 'Time zone (IANA name) for times without an offset and for every time printed [default: history.time_zone or UTC]' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l include-deleted -d 'Show deleted campaigns too'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l timeline -d 'Every change with who made it, oldest first: of the --campaign(s) given, else of all the customer\'s campaigns; up to --at if given'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -l precise -d 'Print times to the microsecond, as stored [default: to the second]'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-at" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l reject-file -d 'Where --skip-invalid writes bad lines [default: FILE.rejected, or history-import.rejected.ndjson for stdin]' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l tz -d 'Time zone (IANA name, e.g. UTC or Europe/Berlin) of event times without an offset [default: none; such lines are bad lines]' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l skip-invalid -d 'Write bad lines to the reject file and import the rest (default: a bad line fails the import and nothing is imported)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -l dry-run -d 'Parse, stage and count, then roll back: nothing is imported'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand history-import" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l segment -d 'Flush only this segment' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l batch-size -d 'Requests claimed per batch (one transaction); default segments.batch_size or 50000' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l max-batches -d 'Stop after this many batches (the rest stays queued)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l interval -d 'Pause between rounds of --watch, e.g. 10s, 500ms, 2m; default segments.interval_seconds or 10s' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l watch -d 'Keep flushing every --interval until SIGTERM/Ctrl-C (the current batch finishes first)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -l dry-run -d 'Coalesce and report what would be flushed; change and send nothing'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand flush-segment" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand serve" -l listen -d 'Address to listen on, e.g. 0.0.0.0:5010 (port 0: any free port); default serve.listen or 127.0.0.1:5010' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand serve" -l flush-interval -d 'Pause between flushes to Split, e.g. 10s, 500ms; default segments.interval_seconds or 10s' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand serve" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand serve" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand serve" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand serve" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand serve" -l no-flush -d 'Only queue; leave delivery to `cdpctl flush-segment` (e.g. several serve replicas, one flusher)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand serve" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand serve" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand serve" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand serve" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand serve" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l group -d 'Recalculate only this group, in full (repeatable; leaves the change journal alone)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l now -d 'Reference time for activity windows, RFC 3339 (default: now)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l interval -d 'Pause between --watch runs (e.g. 10s, 500ms, 1m)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l define -d 'Validate and save group definitions from a JSON file (insert or replace), then stop' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l explain -d 'Print the SQL a run executes for this group and stop' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand calc-audiences" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
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
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand completions" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand man" -l out-dir -d 'Write every page into DIR (cdpctl.1, cdpctl-init.1, ...) instead of printing one' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand man" -l config -d 'JSON configuration file (see examples/cdpctl.json)' -r -F
complete -c cdpctl -n "__fish_cdpctl_using_subcommand man" -l database-url -d 'PostgreSQL URL; overrides the config\'s `postgresql` block' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand man" -l format -d 'Output format: a table for people, one JSON document for machines' -r -f -a "table\t''
json\t''"
complete -c cdpctl -n "__fish_cdpctl_using_subcommand man" -l region -d 'AWS region for DynamoDB; overrides "dynamodb.region" and the AWS chain (AWS_REGION, the profile)' -r
complete -c cdpctl -n "__fish_cdpctl_using_subcommand man" -s y -l yes -d 'Answer yes to confirmations (required without a terminal)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand man" -s q -l quiet -d 'Only errors on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand man" -s v -l verbose -d 'More detail on stderr'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand man" -s h -l help -d 'Print help'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand man" -s V -l version -d 'Print version'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "init" -d 'Create or upgrade every schema, table, index and trigger (idempotent)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "status" -d 'Backlogs at a glance: what exists and what is waiting'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "go-production" -d 'Switch the public views to the cdpctl tables, keeping backups (checked, atomic)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "rollback" -d 'Undo go-production: restore the backups and the saved view definitions'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "migrate-audiences" -d 'Move campaign audiences from contact references to contact ids (through DynamoDB)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "membership" -d 'Which of these campaigns contain a contact (reads both audience structures)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "stitch" -d 'Profile stitching: resolve queued events into customer entities; `explain` shows why'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "calc-attrs" -d 'Calculate customer attributes for entities with new activity'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "reset-context" -d 'Mark context keys stale (or recompute them now)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "demo" -d 'Seed a realistic sample CDP and run the pipeline end to end'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "history-at" -d 'A customer\'s campaigns as they were at a moment; --diff-from, --timeline'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "history-import" -d 'Load existing campaign history exports (NDJSON), idempotently'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "flush-segment" -d 'Drain the queue of one-at-a-time segment add/remove requests in coalesced batches'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "serve" -d 'HTTP ingest replacing the mparticle-audiences-batch server: durable queue, flushes to Split'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "calc-audiences" -d 'Recalculate rule-based contact groups for the entities that changed'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "completions" -d 'Print shell completions'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "man" -d 'Print a manual page (or write them all with --out-dir)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and not __fish_seen_subcommand_from init status go-production rollback migrate-audiences membership stitch calc-attrs reset-context demo history-at history-import flush-segment serve calc-audiences completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cdpctl -n "__fish_cdpctl_using_subcommand help; and __fish_seen_subcommand_from stitch" -f -a "explain" -d 'Why items share an entity: the entity, its identifiers, its merges, and for two items the shortest chain of events and identifiers linking them'
