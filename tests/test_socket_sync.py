"""The per-socket delivery state machine, alone: no socket, no database, no event loop."""

from __future__ import annotations

from notifications.socket_sync import SocketSync


def live_at(head: int, buffer_frames: int = 100) -> SocketSync:
    sync = SocketSync(buffer_frames=buffer_frames)
    sync.start(head)
    assert not sync.go_live()
    return sync


def pushes(*seqs: int) -> list[tuple[int, str]]:
    return [(seq, f"n{seq}") for seq in seqs]


def test_pushes_that_extend_what_was_sent_go_out_in_order_once() -> None:
    sync = live_at(3)
    assert sync.on_push(pushes(5, 4, 4)).send == ["n4", "n5"]
    assert sync.sent_seq == 5
    assert sync.on_push(pushes(4, 5)).send == []  # already sent: a repeat of the channel layer is dropped


def test_a_gap_is_filled_by_a_replay_never_sent_with_a_hole() -> None:
    sync = live_at(3)
    plan = sync.on_push(pushes(5))  # 4's push was lost
    assert plan.send == [] and plan.catch_up
    assert sync.sent_seq == 3 and sync.pending_max == 5
    sync.begin_replay(sync.sent_seq)
    assert sync.page_sent(5, more=False) is None  # the replay brought 4 and 5
    assert sync.live and sync.sent_seq == 5


def test_pushes_during_a_replay_wait_for_it_and_it_goes_again_for_them() -> None:
    sync = live_at(0)
    sync.begin_replay(0)
    plan = sync.on_push(pushes(11, 12))  # arrive while page 1..10 is read
    assert plan.send == [] and not plan.catch_up  # the running replay takes them
    assert sync.page_sent(10, more=False) == 10  # go again from 10
    assert sync.page_sent(12, more=False) is None
    sync.end_replay()
    assert sync.on_push(pushes(12, 13)).send == ["n13"]


def test_a_replay_in_pages_waits_for_the_client_between_pages() -> None:
    sync = live_at(0)
    sync.begin_replay(0)
    assert sync.page_sent(1000, more=True) is None
    sync.end_replay()
    assert not sync.live
    assert sync.on_push(pushes(1001)) == sync.on_push([])  # nothing sent, no catch-up: the client's resume comes
    sync.begin_replay(1000)
    assert sync.page_sent(1001, more=False) is None and sync.live


def test_a_reset_moves_the_socket_to_the_head() -> None:
    sync = live_at(0)
    sync.begin_replay(0)  # the cursor was older than retention: the page is a reset at head 40
    assert sync.page_sent(40, more=False) is None
    sync.end_replay()
    assert sync.on_push(pushes(41)).send == ["n41"]


def test_pushes_before_the_socket_goes_live_are_caught_up() -> None:
    sync = SocketSync(buffer_frames=100)
    assert sync.on_push(pushes(1)).send == []  # between attaching to the hub and reading the head
    sync.start(0)
    assert sync.go_live()


def test_acks_are_clamped_to_what_was_sent_and_recorded_only_when_they_move() -> None:
    sync = live_at(0)
    sync.on_push(pushes(1, 2, 3))
    assert sync.on_ack(2**62) == 3
    assert sync.on_ack(2) is None and sync.on_ack(3) is None
    assert sync.acked_seq == 3


def test_a_client_that_does_not_ack_is_too_slow_past_its_buffer() -> None:
    sync = live_at(0, buffer_frames=2)
    assert not sync.on_push(pushes(1, 2)).too_slow
    assert sync.on_push(pushes(3)).too_slow
    sync2 = live_at(0, buffer_frames=2)
    sync2.on_push(pushes(1, 2))
    sync2.on_ack(2)
    assert not sync2.on_push(pushes(3)).too_slow


def test_a_replay_asked_from_below_the_ack_lowers_it() -> None:
    sync = live_at(0)
    sync.on_push(pushes(1, 2, 3))
    sync.on_ack(3)
    sync.begin_replay(1)  # a reconnecting client says it holds only up to 1
    assert sync.acked_seq == 1


def test_heartbeat_repairs_a_dropped_head_and_names_only_what_was_sent() -> None:
    sync = live_at(0)
    first = sync.on_heartbeat(2, unread=2)  # 1 and 2 are in flight: say what was sent, and no count
    assert not first.catch_up and (first.head_seq, first.unread) == (0, None)
    assert sync.on_heartbeat(2, unread=2).catch_up  # still not sent a heartbeat later: dropped
    assert sync.pending_max == 2
    sync.begin_replay(0)
    sync.page_sent(2, more=False)
    sync.end_replay()
    steady = sync.on_heartbeat(2, unread=1)
    assert not steady.catch_up and (steady.head_seq, steady.unread) == (2, 1)


def test_redelivery_sends_again_what_was_sent_and_never_runs_ahead() -> None:
    sync = live_at(5)
    assert sync.on_push(pushes(2, 3), redelivery=True).send == ["n2", "n3"]
    assert sync.sent_seq == 5
    plan = sync.on_push(pushes(4, 7), redelivery=True)  # 7 was never sent here, and 6 is missing
    assert plan.send == ["n4"] and plan.catch_up and sync.sent_seq == 5
