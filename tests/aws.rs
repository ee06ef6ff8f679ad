//! DynamoDB through the standard AWS chain: the region from `--region`/the
//! config, else `AWS_REGION`/the profile; credential_process profiles;
//! credential and service errors as one readable sentence.
//! Each test runs in its own process (nextest), so setting the environment
//! is safe.

mod common;

use cdpctl::config::DynamoConfig;
use cdpctl::dynamo::ContactMapper;
use common::dynamo::Dynalite;

/// No AWS settings from the machine leak into a test.
fn clean_aws_env(dir: &std::path::Path) {
    for k in [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        std::env::remove_var(k);
    }
    std::env::set_var("AWS_CONFIG_FILE", dir.join("config"));
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"));
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
}

fn region_of(m: &ContactMapper) -> String {
    m.client().config().region().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn region_from_the_environment_then_the_config() {
    let dir = tempfile::tempdir().unwrap();
    clean_aws_env(dir.path());
    let d = Dynalite::start().await;
    d.load([("ref-1", 7)]).await;
    std::env::set_var("AWS_REGION", "ap-southeast-2");
    let cfg = DynamoConfig {
        region: None,
        ..d.config()
    };
    let m = ContactMapper::new(&cfg).await.unwrap();
    assert_eq!(region_of(&m), "ap-southeast-2");
    let found = m.lookup(&["ref-1".to_string()]).await.unwrap();
    assert_eq!(found["ref-1"], 7);
    // The config (or --region) wins over the environment.
    let m = ContactMapper::new(&DynamoConfig {
        region: Some("eu-north-1".into()),
        ..d.config()
    })
    .await
    .unwrap();
    assert_eq!(region_of(&m), "eu-north-1");
    // The profile's region when AWS_REGION is unset.
    std::env::remove_var("AWS_REGION");
    std::fs::write(
        dir.path().join("config"),
        "[profile work]\nregion = sa-east-1\n",
    )
    .unwrap();
    std::env::set_var("AWS_PROFILE", "work");
    let m = ContactMapper::new(&cfg).await.unwrap();
    assert_eq!(region_of(&m), "sa-east-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_process_profile_is_used() {
    let dir = tempfile::tempdir().unwrap();
    clean_aws_env(dir.path());
    let d = Dynalite::start().await;
    d.load([("ref-1", 9)]).await;
    std::fs::write(
        dir.path().join("config"),
        "[profile proc]\nregion = eu-west-3\ncredential_process = /bin/echo {\"Version\": 1, \"AccessKeyId\": \"AKPROC\", \"SecretAccessKey\": \"secret\"}\n",
    )
    .unwrap();
    std::env::set_var("AWS_PROFILE", "proc");
    let m = ContactMapper::new(&DynamoConfig {
        region: None,
        ..d.config()
    })
    .await
    .unwrap();
    assert_eq!(region_of(&m), "eu-west-3");
    assert_eq!(m.lookup(&["ref-1".to_string()]).await.unwrap()["ref-1"], 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_and_region_errors_are_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    clean_aws_env(dir.path());
    let cfg = DynamoConfig {
        region: None,
        endpoint_url: None,
        ..DynamoConfig::default()
    };
    let e = format!("{:#}", ContactMapper::new(&cfg).await.err().unwrap());
    assert!(e.starts_with("no AWS region for DynamoDB"), "{e}");
    // A failing credential_process: at once, no retries, no debug output.
    std::fs::write(
        dir.path().join("config"),
        "[profile broken]\nregion = eu-west-1\ncredential_process = /bin/false\n",
    )
    .unwrap();
    std::env::set_var("AWS_PROFILE", "broken");
    let e = format!("{:#}", ContactMapper::new(&cfg).await.err().unwrap());
    assert!(e.starts_with("cannot get AWS credentials"), "{e}");
    assert!(
        !e.contains('{') && !e.contains("Error {"),
        "debug output: {e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn service_errors_show_code_and_message() {
    let dir = tempfile::tempdir().unwrap();
    clean_aws_env(dir.path());
    let d = Dynalite::start().await;
    let m = ContactMapper::new(&DynamoConfig {
        table: "no_such_table".into(),
        ..d.config()
    })
    .await
    .unwrap();
    let e = format!("{:#}", m.lookup(&["x".to_string()]).await.unwrap_err());
    assert!(!e.contains("DispatchFailure") && !e.contains("{ "), "{e}");
    assert!(e.contains("no_such_table"), "{e}");
}
