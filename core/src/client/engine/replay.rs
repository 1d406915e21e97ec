//! Replay: writing again what a lost connection carried and no server confirmed, and what
//! changes when a server turns out not to confirm per session.

use super::*;

/// What writing one kept message again came to.
pub(super) enum Resend {
    Wrote,
    /// No connection to a server that acks can take it now.
    Blocked,
    /// The connection at this index failed.
    Lost(usize),
}

impl ClientEngine {
    /// Writes link `j`'s next kept message again: on its own connection if its server acks,
    /// else on any connection whose server does (failover), after a sequence mark when that
    /// connection's numbering does not continue with it.
    pub(super) fn resend_one(&mut self, j: usize) -> Resend {
        let acks = |l: &Link| l.usable() && l.server == ServerKind::Acks;
        let i = if acks(&self.links[j]) {
            j
        } else {
            match self.links.iter().position(acks) {
                Some(i) => i,
                None => return Resend::Blocked,
            }
        };
        let (session, at, end) = {
            let l = &self.links[j];
            (l.session, l.resend, l.resend_end)
        };
        let (seq, body) = {
            let r = &self.links[j].retained[at];
            (r.seq, r.body.clone())
        };
        let target = &mut self.links[i];
        if !target.continues_run(session, seq, true) {
            let run = protocol::Run {
                session,
                seq,
                resent: (end - at) as u64,
            };
            return match target.write_mark(run, &mut self.control_seq) {
                Some(false) => Resend::Lost(i),
                // The message itself follows once the writer is free.
                _ if target.usable() => self.resend_one(j),
                _ => Resend::Blocked,
            };
        }
        let epoch = target.epoch;
        let conn = target.conn.as_mut().expect("usable link");
        let mut message = ZmqMessage::with_capacity(protocol::empty_corr(), 2);
        message.push_back(body);
        let result = conn.writer.start(message);
        if matches!(result, Some(Err(ZmqError::ReturnToSender { .. }))) {
            return Resend::Lost(i);
        }
        target.unconfirmed = true;
        target.advance_run();
        let source = &mut self.links[j];
        source.retained[at].epoch = epoch;
        source.resend += 1;
        bump(&self.counters.engine.replayed, 1);
        match result {
            Some(Err(_)) => Resend::Lost(i),
            _ => Resend::Wrote,
        }
    }

    /// A peer that sends no acks: only replies and the close barrier confirm its reads. What
    /// was kept of the sends written to it is counted the plain way from now on.
    pub(super) fn became_plain(&mut self, i: usize) {
        self.keeps_nothing(i, ServerKind::Plain);
    }

    /// A peer that cannot recognise replays (`kind`: Plain, or Counts): what was kept of the
    /// sends written to it is counted per connection from now on, as before sessions.
    pub(super) fn keeps_nothing(&mut self, i: usize, kind: ServerKind) {
        let link = &mut self.links[i];
        link.server = kind;
        link.hello_deadline = None;
        let (n, bytes) = link.release_written_on(link.epoch);
        self.shared.release(n, bytes);
        // Replays wait for a server that acks; with none connected nor maybe coming up on a
        // live connection, nobody can confirm them.
        let hope = self
            .links
            .iter()
            .any(|l| l.conn.is_some() && l.server.keeps());
        if !hope {
            let mut lost = 0;
            for link in &mut self.links {
                if link.resending() {
                    let (n, bytes) = link.drop_retained();
                    self.shared.release(n, bytes);
                    lost += n;
                }
            }
            self.drop_sends(DropReason::PeerLost, lost);
        }
    }
}
