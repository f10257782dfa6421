//! A round trip through the real broker with the lab's client settings: an idempotent producer,
//! a consumer group that stores offsets only after handling, commits them, and resumes there.

use common::env::testing::{shared_env, unique_topic};
use common::kafka_clients::{
    create_topics, delete_prefixed, idempotent_producer_config, manual_commit_consumer_config,
    ClientTuning,
};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

async fn consume(consumer: &StreamConsumer, count: usize) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a message within 30 s")
            .expect("no consumer error");
        let key = String::from_utf8(msg.key().unwrap().to_vec()).unwrap();
        let value = String::from_utf8(msg.payload().unwrap().to_vec()).unwrap();
        // At-least-once: store the offset only once the message is handled.
        consumer.store_offset_from_message(&msg).unwrap();
        seen.push((key, value));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_produce_group_consume_commit_and_resume() {
    let env = shared_env().await;
    let bootstrap = env.bootstrap_servers();
    let topic = unique_topic("round-trip");
    create_topics(&bootstrap, &[&topic], 1).await.unwrap();
    let tuning = ClientTuning::default();
    let producer: FutureProducer = idempotent_producer_config(&bootstrap, &tuning)
        .create()
        .unwrap();

    for i in 0..10 {
        let (key, value) = (format!("order-{}", i % 3), format!("event-{i}"));
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered");
    }

    let group = unique_topic("group");
    let consumer: StreamConsumer = manual_commit_consumer_config(&bootstrap, &group, &tuning)
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let seen = consume(&consumer, 10).await;
    let values: Vec<&str> = seen.iter().map(|(_, v)| v.as_str()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("event-{i}")).collect();
    assert_eq!(values, expected, "one partition keeps produce order");
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();

    let mut partitions = TopicPartitionList::new();
    partitions.add_partition(&topic, 0);
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        committed.find_partition(&topic, 0).unwrap().offset(),
        Offset::Offset(10)
    );
    drop(consumer);

    // A new member of the same group resumes after the committed offset: it sees only new data.
    producer
        .send(
            FutureRecord::to(&topic).key("order-9").payload("event-10"),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    let resumed: StreamConsumer = manual_commit_consumer_config(&bootstrap, &group, &tuning)
        .create()
        .unwrap();
    resumed.subscribe(&[&topic]).unwrap();
    let seen = consume(&resumed, 1).await;
    assert_eq!(seen, vec![("order-9".to_string(), "event-10".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_runs_topics_and_groups_are_deleted_and_nothing_else() {
    let env = shared_env().await;
    let bootstrap = env.bootstrap_servers();
    let prefix = unique_topic("finished");
    let (a, b, other) = (
        format!("{prefix}.a"),
        format!("{prefix}.b"),
        unique_topic("unrelated"),
    );
    create_topics(&bootstrap, &[&a, &b, &other], 1)
        .await
        .unwrap();
    // A group with committed offsets, its consumer gone, as after a run.
    let producer: FutureProducer = idempotent_producer_config(&bootstrap, &ClientTuning::default())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&a).key("k").payload("v"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    {
        let consumer: StreamConsumer = manual_commit_consumer_config(
            &bootstrap,
            &format!("{prefix}.group"),
            &ClientTuning::default(),
        )
        .create()
        .unwrap();
        consumer.subscribe(&[&a]).unwrap();
        consume(&consumer, 1).await;
        consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    }
    let (topics, groups) = delete_prefixed(&bootstrap, &prefix).await.unwrap();
    assert_eq!((topics, groups), (2, 1));
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
    let names: Vec<String> = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap()
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    assert!(!names.contains(&a) && !names.contains(&b), "{names:?}");
    assert!(names.contains(&other), "other topics stay: {names:?}");
    let left: Vec<String> = admin
        .inner()
        .fetch_group_list(None, Duration::from_secs(10))
        .unwrap()
        .groups()
        .iter()
        .map(|g| g.name().to_string())
        .filter(|g| g.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_reports_the_settings_the_lab_gave_it() {
    let env = shared_env().await;
    let configs = common::kafka_clients::broker_configs(&env.bootstrap_servers())
        .await
        .unwrap();
    assert_eq!(
        configs
            .get("group.consumer.session.timeout.ms")
            .map(String::as_str),
        Some(
            common::kafka_clients::GROUP_SESSION_TIMEOUT_MS
                .to_string()
                .as_str()
        ),
        "{configs:?}"
    );
    assert!(
        configs.contains_key("log.flush.interval.messages"),
        "{configs:?}"
    );
}
