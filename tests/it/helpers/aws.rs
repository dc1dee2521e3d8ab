//! The AWS wire-protocol emulator (moto server) that `scripts/test.sh` starts.
//! Tests reach it through `AWS_ENDPOINT_URL`; without it they fail and say how
//! to start it. Nothing here mocks the SDK: these are real SNS and SQS calls.

use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use herald::consumer::sqs_poller::SqsPoller;
use serde_json::Value;

use super::{TestApp, eventually};

const HOW_TO_START: &str = "the AWS emulator is not running: run the whole suite with `scripts/test.sh`, \
    or start `moto_server -H 127.0.0.1 -p 5000` and export AWS_ENDPOINT_URL=http://127.0.0.1:5000 \
    AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test";

/// SDK clients pointed at the emulator.
pub struct Emulator {
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub endpoint: String,
}

/// A topic with an SQS queue subscribed to it (raw delivery), and a dead-letter queue.
pub struct TopicWithQueue {
    pub topic_arn: String,
    pub queue_url: String,
    pub dlq_url: String,
}

/// Receives through `poller` until message `id` has the status `want` at
/// `app` (up to 20 s); returns its view.
pub async fn poll_until_status(poller: &SqsPoller, app: &TestApp, id: &str, want: &str) -> Value {
    eventually(
        &format!("message {id} with status {want}"),
        Duration::from_secs(20),
        async || {
            poller.poll_once(Duration::from_secs(1)).await.unwrap();
            app.view(id).await.filter(|v| v["status"] == want)
        },
    )
    .await
}

/// Connects to the emulator, or fails the test with instructions.
/// A topic with its queue and a status table: SNS mode with `STATUS_TABLE`.
pub struct SnsWithStatuses {
    pub aws: Emulator,
    pub tq: TopicWithQueue,
    pub table: String,
}

impl SnsWithStatuses {
    pub async fn create() -> Self {
        let aws = emulator().await;
        let tq = aws.topic_with_queue(false, 5).await;
        let table = aws.status_table().await;
        Self { aws, tq, table }
    }

    /// `SNS_TOPIC_ARN` and `STATUS_TABLE`.
    pub fn vars(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("SNS_TOPIC_ARN", self.tq.topic_arn.as_str()),
            ("STATUS_TABLE", self.table.as_str()),
        ]
    }
}

pub async fn emulator() -> Emulator {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .unwrap_or_else(|_| panic!("AWS_ENDPOINT_URL is not set; {HOW_TO_START}"));
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    if tokio::net::TcpStream::connect(&host).await.is_err() {
        panic!("nothing listens on {endpoint}; {HOW_TO_START}");
    }
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    Emulator {
        sns: aws_sdk_sns::Client::new(&config),
        sqs: aws_sdk_sqs::Client::new(&config),
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
        secrets: aws_sdk_secretsmanager::Client::new(&config),
        endpoint,
    }
}

/// A name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

impl Emulator {
    /// Creates a topic and a queue subscribed with raw delivery; the queue
    /// dead-letters after `max_receives` receives. FIFO when `fifo` is true.
    pub async fn topic_with_queue(&self, fifo: bool, max_receives: u32) -> TopicWithQueue {
        let suffix = if fifo { ".fifo" } else { "" };
        let name = unique_name("herald");
        let mut topic = self.sns.create_topic().name(format!("{name}{suffix}"));
        if fifo {
            topic = topic
                .attributes("FifoTopic", "true")
                .attributes("ContentBasedDeduplication", "false");
        }
        let topic_arn = topic
            .send()
            .await
            .expect("create topic")
            .topic_arn
            .expect("topic has an ARN");

        let dlq_url = self
            .create_queue(&format!("{name}-dlq{suffix}"), fifo, None)
            .await;
        let dlq_arn = self.queue_arn(&dlq_url).await;
        let redrive =
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receives}"}}"#);
        let queue_url = self
            .create_queue(&format!("{name}{suffix}"), fifo, Some(redrive))
            .await;
        let queue_arn = self.queue_arn(&queue_url).await;
        self.sns
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&queue_arn)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .expect("subscribe queue to topic");
        TopicWithQueue {
            topic_arn,
            queue_url,
            dlq_url,
        }
    }

    async fn create_queue(&self, name: &str, fifo: bool, redrive: Option<String>) -> String {
        let mut q = self
            .sqs
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::VisibilityTimeout, "30");
        if fifo {
            q = q.attributes(QueueAttributeName::FifoQueue, "true");
        }
        if let Some(policy) = redrive {
            q = q.attributes(QueueAttributeName::RedrivePolicy, policy);
        }
        q.send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue has a URL")
    }

    pub async fn queue_arn(&self, url: &str) -> String {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("get queue ARN");
        attrs
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("queue ARN attribute")
    }

    /// Receives one message, with its attributes, and leaves it in flight.
    pub async fn receive_one(&self, queue_url: &str) -> Message {
        let out = self
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(1)
            .wait_time_seconds(5)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive from SQS");
        out.messages
            .unwrap_or_default()
            .pop()
            .expect("a message within 5 s")
    }

    /// Receives messages until `expected` arrived or `within` passed; deletes what it receives.
    /// Not a wait for an outcome: it returns what came (callers count it,
    /// some expecting nothing), so it keeps its own receive loop.
    pub async fn drain(&self, queue_url: &str, expected: usize, within: Duration) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + within;
        let mut received = Vec::new();
        while received.len() < expected && tokio::time::Instant::now() < deadline {
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive from SQS");
            for m in out.messages.unwrap_or_default() {
                if let Some(handle) = &m.receipt_handle {
                    self.sqs
                        .delete_message()
                        .queue_url(queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete");
                }
                received.push(m);
            }
        }
        received
    }

    /// A status table as `deploy/template.yaml` declares it (keys, the search index, TTL).
    pub async fn status_table(&self) -> String {
        let name = unique_name("herald-status");
        let declared = status_table_declaration();
        self.dynamodb
            .create_table()
            .table_name(&name)
            .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(declared.attributes))
            .set_key_schema(Some(declared.keys))
            .set_global_secondary_indexes(Some(declared.indexes))
            .send()
            .await
            .expect("create the status table");
        self.dynamodb
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(
                aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(declared.ttl_attribute)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("enable TTL");
        name
    }

    /// An events topic with a queue subscribed (raw delivery, so SNS message
    /// attributes arrive as SQS message attributes): (topic ARN, queue URL).
    pub async fn events_topic(&self) -> (String, String) {
        let name = unique_name("herald-events");
        let topic_arn = self
            .sns
            .create_topic()
            .name(&name)
            .send()
            .await
            .expect("create topic")
            .topic_arn
            .expect("topic has an ARN");
        let queue_url = self.create_queue(&name, false, None).await;
        let queue_arn = self.queue_arn(&queue_url).await;
        self.sns
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&queue_arn)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .expect("subscribe queue to topic");
        (topic_arn, queue_url)
    }

    /// A plain queue (no dead-letter queue) with this visibility timeout.
    pub async fn queue_with_visibility(&self, seconds: u32) -> String {
        self.sqs
            .create_queue()
            .queue_name(unique_name("herald-vis"))
            .attributes(QueueAttributeName::VisibilityTimeout, seconds.to_string())
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue has a URL")
    }

    /// How many messages a queue holds now (visible and in flight).
    pub async fn depth(&self, queue_url: &str) -> usize {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let map = attrs.attributes.unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|k| {
            map.get(k)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum()
    }
}

/// The status table as `deploy/template.yaml` declares it: what the tests'
/// tables are created from, so the two cannot drift apart.
pub struct TableDeclaration {
    pub attributes: Vec<aws_sdk_dynamodb::types::AttributeDefinition>,
    pub keys: Vec<aws_sdk_dynamodb::types::KeySchemaElement>,
    pub indexes: Vec<aws_sdk_dynamodb::types::GlobalSecondaryIndex>,
    pub ttl_attribute: String,
}

pub fn status_table_declaration() -> TableDeclaration {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
        ProjectionType, ScalarAttributeType,
    };
    use serde_norway::Value as Yaml;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/template.yaml");
    let template: Yaml =
        serde_norway::from_str(&std::fs::read_to_string(path).expect("the template"))
            .expect("YAML");
    let table = &template["Resources"]["StatusTable"]["Properties"];
    let str_of = |v: &Yaml| v.as_str().expect("a string").to_owned();
    let keys_of = |list: &Yaml| -> Vec<KeySchemaElement> {
        list.as_sequence()
            .expect("a KeySchema")
            .iter()
            .map(|k| {
                KeySchemaElement::builder()
                    .attribute_name(str_of(&k["AttributeName"]))
                    .key_type(KeyType::from(str_of(&k["KeyType"]).as_str()))
                    .build()
                    .unwrap()
            })
            .collect()
    };
    let attributes = table["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions")
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(str_of(&a["AttributeName"]))
                .attribute_type(ScalarAttributeType::from(
                    str_of(&a["AttributeType"]).as_str(),
                ))
                .build()
                .unwrap()
        })
        .collect();
    let indexes = table["GlobalSecondaryIndexes"]
        .as_sequence()
        .map(|list| {
            list.iter()
                .map(|i| {
                    GlobalSecondaryIndex::builder()
                        .index_name(str_of(&i["IndexName"]))
                        .set_key_schema(Some(keys_of(&i["KeySchema"])))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::from(
                                    str_of(&i["Projection"]["ProjectionType"]).as_str(),
                                ))
                                .set_non_key_attributes(
                                    i["Projection"]["NonKeyAttributes"]
                                        .as_sequence()
                                        .map(|names| names.iter().map(str_of).collect()),
                                )
                                .build(),
                        )
                        .build()
                        .unwrap()
                })
                .collect()
        })
        .unwrap_or_default();
    TableDeclaration {
        attributes,
        keys: keys_of(&table["KeySchema"]),
        indexes,
        ttl_attribute: str_of(&table["TimeToLiveSpecification"]["AttributeName"]),
    }
}
