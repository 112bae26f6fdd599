//! A Notifier fake that records every card post, card edit and alert, for handler tests.
#![allow(dead_code)]

use std::sync::Mutex;

use mft::domain::Proposal;
use mft::ports::{Alert, Notifier, NotifyError, Outcome, ProposalCard};

#[derive(Default)]
pub struct RecordingNotifier {
    pub posted: Mutex<Vec<ProposalCard>>,
    /// (proposal id, message id, outcome)
    pub updates: Mutex<Vec<(i64, i64, Outcome)>>,
    pub alerts: Mutex<Vec<Alert>>,
}

impl RecordingNotifier {
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts.lock().expect("alerts lock").clone()
    }

    pub fn updates(&self) -> Vec<(i64, i64, Outcome)> {
        self.updates.lock().expect("updates lock").clone()
    }

    pub fn posted(&self) -> Vec<ProposalCard> {
        self.posted.lock().expect("posted lock").clone()
    }
}

#[async_trait::async_trait]
impl Notifier for RecordingNotifier {
    async fn post_proposal(&self, card: &ProposalCard) -> Result<i64, NotifyError> {
        let mut posted = self.posted.lock().expect("posted lock");
        posted.push(card.clone());
        Ok(1000 + card.proposal.id)
    }

    async fn update_proposal(
        &self,
        proposal: &Proposal,
        message_id: i64,
        outcome: &Outcome,
    ) -> Result<(), NotifyError> {
        self.updates
            .lock()
            .expect("updates lock")
            .push((proposal.id, message_id, outcome.clone()));
        Ok(())
    }

    async fn alert(&self, alert: &Alert) -> Result<(), NotifyError> {
        self.alerts.lock().expect("alerts lock").push(alert.clone());
        Ok(())
    }
}
