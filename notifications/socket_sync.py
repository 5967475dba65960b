"""What one socket has been sent, and what to do with each push, heartbeat, replay page and ack.

No socket and no I/O here: the consumer asks, then sends what it is told. The
rule it keeps (docs/protocol.md, "Order and gaps"): a socket is sent every seq
in order, each once. A live push goes out only when it extends what was sent
by exactly one; a gap, or a push that comes while a replay is running, is
filled from the database instead, so a dropped push never becomes a hole.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PushPlan:
    send: list[str] = field(default_factory=list)  # encoded frames to send now, in order
    catch_up: bool = False  # replay from sent_seq (unless a replay is already running)
    too_slow: bool = False  # the client is too far behind: close with 4408


@dataclass(frozen=True, slots=True)
class HeartbeatPlan:
    catch_up: bool = False
    head_seq: int = 0  # what the heartbeat frame says the socket holds
    unread: int | None = None  # None while pushes are in flight: the counts would cover seqs not sent yet
    unseen: int | None = None


@dataclass(slots=True)
class SocketSync:
    buffer_frames: int  # seqs a socket may be sent beyond its last ack before it is judged too slow
    sent_seq: int = 0  # every seq up to here has been sent on this socket
    acked_seq: int = 0  # the client says it holds everything up to here
    recorded_ack: int = 0  # the highest ack this socket has handed on to be written
    pending_max: int = 0  # the highest seq pushed but not sent (held for a replay)
    heartbeat_head: int = 0  # the head at the last heartbeat
    live: bool = False  # pushes may go out as they come
    replaying: bool = False

    def start(self, head_seq: int) -> None:
        """Welcome sent with this head: the client is where the stream is now."""
        self.sent_seq = self.acked_seq = head_seq

    def go_live(self) -> bool:
        """No replay asked for: pushes go out from now on. True if some already came that need a catch-up."""
        self.live = True
        return self.pending_max > self.sent_seq

    def on_push(self, items: list[tuple[int, str]], *, redelivery: bool = False) -> PushPlan:
        """(seq, frame) pushed for this user by one round of the hub, in any order, maybe repeated."""
        # The operator's redeliver sends again what this socket was sent (clients drop
        # what they hold by seq); a redelivered seq it was not sent yet takes the usual way,
        # so the socket's seqs still never run ahead of a gap.
        again = [text for seq, text in items if seq <= self.sent_seq] if redelivery else []
        fresh = sorted({seq: text for seq, text in items if seq > self.sent_seq}.items())
        if not fresh:
            return PushPlan(send=again)
        in_order = all(seq == self.sent_seq + i for i, (seq, _) in enumerate(fresh, 1))
        if not self.live or self.replaying or not in_order:
            self.pending_max = max(self.pending_max, fresh[-1][0])
            return PushPlan(send=again, catch_up=self.live and not self.replaying)
        self.sent_seq = fresh[-1][0]
        return PushPlan(send=again + [text for _, text in fresh], too_slow=self.sent_seq - self.acked_seq > self.buffer_frames)

    def on_heartbeat(self, head_seq: int, unread: int, unseen: int = 0) -> HeartbeatPlan:
        # A seq that was the head one heartbeat ago and still has not been sent
        # was dropped: replay. A seq past what was sent is otherwise most likely
        # in flight (a burst being fanned out); replaying it would only repeat it.
        dropped = self.sent_seq < self.heartbeat_head
        self.heartbeat_head = head_seq
        if self.live and dropped:
            self.pending_max = max(self.pending_max, head_seq)
            return HeartbeatPlan(catch_up=True)
        if head_seq > self.sent_seq:
            return HeartbeatPlan(head_seq=self.sent_seq)
        return HeartbeatPlan(head_seq=head_seq, unread=unread, unseen=unseen)

    def begin_replay(self, since: int) -> None:
        """A replay from `since` starts (asked for by the client, or a catch-up); pushes wait for it."""
        self.live = False
        self.replaying = True
        self.acked_seq = min(self.acked_seq, since)

    def page_sent(self, last_seq: int, *, more: bool) -> int | None:
        """A page (or a reset) up to last_seq went out. Returns where the next page starts, or None when done."""
        self.sent_seq = last_seq
        if more:
            return None  # the client asks for the next page with `resume`; pushes wait until then
        self.live = True
        if self.pending_max <= self.sent_seq:
            return None
        return self.sent_seq  # pushes came during the replay: go again from here

    def end_replay(self) -> None:
        self.replaying = False

    def on_ack(self, seq: int) -> int | None:
        """A cumulative ack. Returns the seq to record, if it moves this socket's recorded ack."""
        seq = min(seq, self.sent_seq)
        self.acked_seq = max(self.acked_seq, seq)
        if seq <= self.recorded_ack:
            return None
        self.recorded_ack = seq
        return seq
