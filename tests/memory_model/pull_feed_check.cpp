// memory_model.V2_PullFeedDeliversEachEventOnceAndWakesItsReceiver: versioned_map's pull delivery
// (detail/concurrent/feed.hpp: shard_feed's history slots and publication marks, watcher_state's cursors,
// feed_puller's busy_/again_ and its heavy fence, the writer's light fence and wake test) under Relacy.
//
// The real shard_feed, watcher_state and chan, compiled with ITERLOCK_RELACY: the fences are the symmetric
// mode's seq_cst fences (process_light_fence/process_heavy_fence), and a receiver that parks and is never
// woken is a deadlock that Relacy reports (a lost wake-up). A writer publishes three events into two shards
// while one receiver blocks for each (first suite), or two receivers poll the feed's one-slot channel so
// that their pulls meet (busy_/again_) and the channel fills (second suite). V2: each event arrives exactly
// once, and per shard in order; V5: a batch's events in batch order. The spin budgets are cut so Relacy
// reaches the parking paths quickly.
#define ITERLOCK_CHAN_SPIN_POLLS 2
#define ITERLOCK_CHAN_YIELD_POLLS 1

#include "support/memory_model_check.hpp"

#include <memory>

#include "iterlock/detail/concurrent/feed.hpp"
#include "iterlock/feed.hpp"

namespace {

using change = iterlock::change<int, int>;
using shard = iterlock::detail::shard_feed<change>;
using watcher = iterlock::detail::watcher_state<change>;

// Revisions as versioned_map makes them for 2 shards: number << 1 | shard.
constexpr std::uint64_t revision(std::uint64_t number, std::uint64_t shard_index) {
    return number << 1 | shard_index;
}

// The shared set-up: two shards with room for every event, one pull watcher with a one-slot channel, and
// the writer's three events (shard 0's first; then a batch of two whose second event, on shard 0, names the
// first, on shard 1, as its predecessor). Values 1, 2, 3 in publication order.
struct pull_fixture {
    std::unique_ptr<shard[]> shards;
    std::unique_ptr<iterlock::detail::feed_marks> marks;
    std::shared_ptr<watcher> w;

    void set_up() {
        shards = std::make_unique<shard[]>(2);
        marks = std::make_unique<iterlock::detail::feed_marks>(2);
        for (std::size_t i = 0; i < 2; ++i) shards[i].set_history(4, i, (*marks)[i]);
        w = std::make_shared<watcher>(1);
        w->make_pull(shards.get(), *marks, 2, 1);
        for (std::size_t i = 0; i < 2; ++i) RL_ASSERT(shards[i].start(w, 0, 0));
    }
    void write() {
        shards[0].publish(1, change{iterlock::change_kind::put, 10, 1, revision(1, 0), 0});
        shards[1].publish(1, change{iterlock::change_kind::put, 11, 2, revision(1, 1), 1});
        shards[0].publish(2, change{iterlock::change_kind::put, 12, 3, revision(2, 0), 0}, revision(1, 1));
    }
    void tear_down() {
        w.reset();
        shards.reset();
        marks.reset();
    }
};
// Values taken in one receiver's order: each once, 3 (shard 0's second, and the batch's second) after 1
// and 2.
void check_order(const int* v, int n) {
    for (int i = 0; i < n; ++i)
        for (int j = i + 1; j < n; ++j) {
            RL_ASSERT(v[i] != v[j]);
            RL_ASSERT(v[i] != 3);
        }
}

// One receiver blocks in recv() for the writer's one event: a wake-up the writer misses leaves it asleep
// forever, which Relacy reports as a deadlock. (One event keeps the executions few enough for the bounded
// search to cover them all.)
struct pull_feed_wakes_its_parked_receiver : rl::test_suite<pull_feed_wakes_its_parked_receiver, 2> {
    iterlock::test::futex_scope futexes;
    pull_fixture f;
    void before() { f.set_up(); }
    void after() { f.tear_down(); }
    void thread(unsigned index) {
        if (index == 0) {
            f.shards[1].publish(1, change{iterlock::change_kind::put, 11, 2, revision(1, 1), 0});
            return;
        }
        iterlock::chan<change> ch = f.w->ch;
        std::optional<change> c = ch.recv();
        RL_ASSERT(c.has_value() && *c->value == 2);
    }
};

// Two receivers poll the same feed while the writer publishes, so that their pulls meet (busy_ and again_)
// and the one-slot channel fills; what they did not take is drained at the end. Each event exactly once.
struct pull_feed_delivers_each_event_once : rl::test_suite<pull_feed_delivers_each_event_once, 3> {
    iterlock::test::futex_scope futexes;
    pull_fixture f;
    rl::var<int> got[2][2];
    rl::var<int> count[2];
    void before() {
        f.set_up();
        for (auto& c : count) c($) = 0;
    }
    void after() {
        int seen[4] = {0, 0, 0, 0};
        for (int r = 0; r < 2; ++r) {
            int v[2];
            const int n = count[r]($);
            for (int i = 0; i < n; ++i) ++seen[v[i] = got[r][i]($)];
            check_order(v, n);
        }
        iterlock::chan<change> ch = f.w->ch;
        while (auto c = ch.try_recv()) ++seen[*c->value];
        RL_ASSERT(seen[1] == 1 && seen[2] == 1 && seen[3] == 1);
        f.tear_down();
    }
    void thread(unsigned index) {
        if (index == 0) return f.write();
        const int r = static_cast<int>(index) - 1;
        iterlock::chan<change> ch = f.w->ch;
        for (int i = 0; i < 2; ++i)
            if (auto c = ch.try_recv()) {
                got[r][count[r]($)]($) = *c->value;
                count[r]($) = count[r]($) + 1;
            }
    }
};

}  // namespace

// The parked receiver under the context-bound search with one preemption, all of its executions (~820K, a few
// seconds): a lost wake-up needs the writer preempted at one exact point, which the random scheduler did not
// reach in 2M executions with both fences removed; this search finds it with either fence removed
// (tests/memory_model/plant_weakenings.sh). The polling receivers under the random scheduler: the bounded
// search reports the channel ring's short spin (a receiver waiting for a sender's slot it was preempted in)
// as a livelock, which it is not.
int main(int argc, char** argv) {
    const int parked = iterlock::test::run<pull_feed_wakes_its_parked_receiver>(
        "V2_PullFeedDeliversEachEventOnceAndWakesItsReceiver (one parked receiver)", argc, argv, 1000, 1);
    const int shared = iterlock::test::run<pull_feed_delivers_each_event_once>(
        "V2_PullFeedDeliversEachEventOnceAndWakesItsReceiver (two polling receivers)", argc, argv, 200000);
    return parked != 0 ? parked : shared;
}
