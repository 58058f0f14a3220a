// memory_model.C4_ChannelDeliversEachValueExactlyOnce: the channel's hand-over slot and parking
// (detail/chan/state.hpp, detail/chan/park.hpp; rules C1, C4 and C6 of iterlock/chan.hpp) under Relacy.
//
// The real iterlock::chan<payload> (a pointer to a message held in an rl::var, below), compiled with
// ITERLOCK_RELACY: its atomics are Relacy's and its futex waits and wakes go to the futex model of
// detail/util/atomic_traits.hpp, where a sleeper that nobody wakes is a deadlock that Relacy reports (a lost
// wake-up). Two senders each send one value on an unbuffered channel, so one of them may park in the
// hand-over slot and the other in the send queue (or the receiver parks first); a receiver takes two values.
// C4: each value arrives exactly once (no loss, no duplicate). The second suite does the same on a channel
// with one buffered slot (the ring, its announce/retract and the parked waiters it notifies). The spin
// budgets are cut to two polls so Relacy reaches the futex paths quickly; the protocol does not depend on
// them.
#define ITERLOCK_CHAN_SPIN_POLLS 2
#define ITERLOCK_CHAN_YIELD_POLLS 1

#include "support/memory_model_check.hpp"

#include "iterlock/chan.hpp"

namespace {

// The value a channel carries: a pointer to a message whose content is an rl::var. The sender writes the
// content before send(); the receiver reads it after recv(). Relacy reports a data race on the content unless
// the channel made the send happen before the receive (Go's memory model, which iterlock's channels keep):
// a hand-over whose release/acquire pairing is missing shows up here, even where x86 would have hidden it.
// (A pointer, so that the value fits the unbuffered channel's hand-over slot, 16 bytes.)
struct message {
    rl::var<int> content;
};
struct payload {
    message* m = nullptr;
};

template <std::size_t Capacity>
struct channel_delivers_each_value_exactly_once
    : rl::test_suite<channel_delivers_each_value_exactly_once<Capacity>, 3> {
    iterlock::test::futex_scope futexes;
    iterlock::chan<payload> ch{Capacity};
    message messages[2];

    void thread(unsigned index) {
        if (index < 2) {
            message& m = messages[index];
            m.content($) = static_cast<int>(index) + 1;
            ch.send(payload{&m});
            return;
        }
        int seen[3] = {0, 0, 0};
        for (int i = 0; i < 2; ++i) {
            std::optional<payload> v = ch.recv();
            RL_ASSERT(v.has_value());
            const int x = v->m->content($);
            RL_ASSERT(x == 1 || x == 2);
            ++seen[x];
        }
        RL_ASSERT(seen[1] == 1 && seen[2] == 1);
    }
};

}  // namespace

int main(int argc, char** argv) {
    const int unbuffered = iterlock::test::run<channel_delivers_each_value_exactly_once<0>>(
        "C4_ChannelDeliversEachValueExactlyOnce (unbuffered: hand-over slot)", argc, argv, 100000);
    const int buffered = iterlock::test::run<channel_delivers_each_value_exactly_once<1>>(
        "C4_ChannelDeliversEachValueExactlyOnce (one buffered slot)", argc, argv, 100000);
    return unbuffered != 0 ? unbuffered : buffered;
}
