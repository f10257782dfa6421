//! The coordinator's side of the wire to each participant: Prepare with a deadline (silence is a
//! NO vote), and a decision sent until acknowledged.

use super::ports::Participant;
use crate::branch::ServiceKind;
use crate::protocol::{Decision, VoteResult};
use common::api::twopc_pb::{
    participant_client::ParticipantClient, Branch, GidRequest, PrepareRequest, VoteKind,
};
use common::domain::RejectReason;
use common::retry::Backoff;
use futures::future::BoxFuture;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// One participant: its service name and a lazily connected channel.
#[derive(Clone)]
pub struct ParticipantLink {
    pub service: ServiceKind,
    client: ParticipantClient<Channel>,
}

impl ParticipantLink {
    pub fn new(service: ServiceKind, url: &str) -> Result<ParticipantLink, String> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("participant URL {url:?} for {}: {e}", service.as_str()))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true);
        Ok(ParticipantLink {
            service,
            client: ParticipantClient::new(endpoint.connect_lazy()),
        })
    }

    pub fn name(&self) -> &'static str {
        self.service.as_str()
    }

    /// Sends Prepare; an error or no answer within `timeout` is a NO vote.
    async fn prepare_once(&self, gid: &str, branch: Branch, timeout: Duration) -> VoteResult {
        let mut request = tonic::Request::new(PrepareRequest {
            gid: gid.to_string(),
            branch: Some(branch),
            timeout_ms: timeout.as_millis() as u32,
        });
        request.set_timeout(timeout);
        let mut client = self.client.clone();
        match tokio::time::timeout(timeout, client.prepare(request)).await {
            Err(_) => VoteResult::Failed(format!("no vote within {} ms", timeout.as_millis())),
            Ok(Err(status)) => {
                VoteResult::Failed(format!("{:?}: {}", status.code(), status.message()))
            }
            Ok(Ok(reply)) => {
                let vote = reply.into_inner();
                match (vote.vote(), vote.business) {
                    (VoteKind::Yes, _) => VoteResult::Yes,
                    (_, true) => match RejectReason::parse(&vote.reason) {
                        Some(reason) => VoteResult::BusinessNo(reason),
                        None => VoteResult::Failed(format!(
                            "{}: a business refusal this build does not know: {:?}",
                            self.name(),
                            vote.reason
                        )),
                    },
                    (_, false) => VoteResult::Failed(vote.reason),
                }
            }
        }
    }

    /// Sends the decision once; `Ok` when acknowledged.
    pub async fn send_decision(
        &self,
        gid: &str,
        decision: Decision,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut request = tonic::Request::new(GidRequest {
            gid: gid.to_string(),
        });
        request.set_timeout(timeout);
        let mut client = self.client.clone();
        let call = async {
            match decision {
                Decision::Commit => client.commit(request).await.map(|_| ()),
                Decision::Abort => client.abort(request).await.map(|_| ()),
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(format!(
                "{}: no ack within {} ms",
                self.name(),
                timeout.as_millis()
            )),
            Ok(Err(status)) => Err(format!(
                "{}: {:?}: {}",
                self.name(),
                status.code(),
                status.message()
            )),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends the decision until it is acknowledged, backing off between tries. Never gives up:
    /// a logged COMMIT must reach every participant.
    async fn deliver_until_acknowledged(&self, gid: &str, decision: Decision) {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        while let Err(err) = self
            .send_decision(gid, decision, Duration::from_secs(2))
            .await
        {
            tracing::debug!(gid, cause = %err, ?decision, "decision not acknowledged; retrying");
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

impl Participant for ParticipantLink {
    fn service(&self) -> ServiceKind {
        self.service
    }

    fn prepare<'a>(
        &'a self,
        gid: &'a str,
        branch: Branch,
        timeout: Duration,
    ) -> BoxFuture<'a, VoteResult> {
        Box::pin(self.prepare_once(gid, branch, timeout))
    }

    fn deliver_decision<'a>(&'a self, gid: &'a str, decision: Decision) -> BoxFuture<'a, ()> {
        Box::pin(self.deliver_until_acknowledged(gid, decision))
    }
}
