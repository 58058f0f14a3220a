// Example: iterlock::map behaves like Go's built-in map, shown one rule at a time.
//
// Sections: (1) randomized iteration order, reproducible with a fixed seed (rule I6); (2) lookups, Go's
// `v, ok := m[k]` as get(), find(), contains(), delete as erase(); (3) writes during the map's own
// iteration (rules I1-I5); (4) misuse detection in throw mode, with Go's message; (5) incremental growth,
// watched through the bucket counts.
//
// Invariant: every rule shown is also checked; the program prints "FAILED: ..." and exits 1 when one does
// not hold, so ctest runs it as a smoke test of the public API.
#include <iterlock/map.hpp>
// Section 5 peeks at the table's shape (B, growth in progress, overflow buckets) through the test-access
// header. That header is for tests and illustrations only: it is not part of the public API.
#include <iterlock/detail/map/test_access.hpp>

#include <cstdio>
#include <latch>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
    if (!ok) {
        std::printf("FAILED: %s\n", what);
        ++failures;
    }
}

void heading(const char* title) {
    std::printf("\n== %s\n", title);
}

template <class Map>
std::vector<int> keys_in_order(const Map& m) {
    std::vector<int> out;
    for (const auto& kv : m) out.push_back(kv.first);
    return out;
}

// (1) I6: each walk starts at a random entry; a fixed seed makes the sequence of orders reproducible.
void iteration_order() {
    heading("1. iteration order is randomized (I6)");
    iterlock::map<int, int> m;
    for (int i = 0; i < 8; ++i) m[i] = i * i;

    std::set<int> first_keys;
    std::printf("first key of the first 10 of 32 walks over the same 8 entries:");
    for (int walk = 0; walk < 32; ++walk) {
        const std::vector<int> order = keys_in_order(m);
        expect(order.size() == 8, "a walk produces every entry once");
        if (walk < 10) std::printf(" %d", order.front());
        first_keys.insert(order.front());
    }
    std::printf("\n%zu different first keys in 32 walks\n", first_keys.size());
    expect(first_keys.size() > 1, "walks of the same map start at different entries");

    // Same seed, same operations: the same sequence of orders, walk after walk.
    iterlock::map<int, int> a(iterlock::seed{42});
    iterlock::map<int, int> b(iterlock::seed{42});
    for (int i = 0; i < 100; ++i) {
        a[i] = i;
        b[i] = i;
    }
    bool same = true;
    for (int walk = 0; walk < 3; ++walk) same = same && keys_in_order(a) == keys_in_order(b);
    std::printf("two maps built with seed{42}: hash_seed %s, three walks in %s order\n",
                a.hash_seed() == b.hash_seed() ? "equal" : "different", same ? "the same" : "different");
    expect(a.hash_seed() == b.hash_seed(), "a fixed seed fixes hash0");
    expect(same, "a fixed seed makes the walk order reproducible");
}

// (2) Lookups. Go's `v, ok := m[k]` is get(): a copy, no insertion. operator[] is Go's `m[k] = v`.
void lookups() {
    using namespace std::string_view_literals;
    heading("2. lookups: get, find, contains, erase");
    // std::equal_to<> makes lookup transparent: std::string_view finds std::string keys without a copy.
    iterlock::map<std::string, int, iterlock::hash<std::string>, std::equal_to<>> ages{{"alice", 31},
                                                                                       {"bob", 27}};

    const std::optional<int> alice = ages.get("alice"sv);
    const std::optional<int> carol = ages.get("carol"sv);
    std::printf("get(alice) = %s%d, get(carol) = %s\n", alice ? "" : "(none) ", alice.value_or(0),
                carol ? "present" : "nullopt (Go: 0, false)");
    expect(alice == 31 && !carol, "get returns the value or nullopt");
    expect(ages.size() == 2, "get never inserts (unlike std::map::operator[])");

    if (auto e = ages.find("bob"sv)) e->second += 1;  // entry_ptr: pointer-like, tests as bool
    expect(ages.get("bob"sv) == 28, "find gives write access to the entry");

    ages["carol"] = 45;  // Go: m["carol"] = 45
    std::printf("after ages[\"carol\"] = 45: size %zu, contains(carol) %s\n", ages.size(),
                ages.contains("carol"sv) ? "true" : "false");
    expect(ages.count("carol"sv) == 1, "operator[] inserts");

    const auto erased = ages.erase("dave"sv);  // Go's delete(m, k) is a no-op for a missing key
    const auto erased_bob = ages.erase("bob"sv);
    std::printf("erase(dave) = %zu, erase(bob) = %zu, size %zu\n", static_cast<std::size_t>(erased),
                static_cast<std::size_t>(erased_bob), ages.size());
    expect(erased == 0 && erased_bob == 1 && ages.size() == 2, "erase returns 0 or 1");
}

// (3) Writes by the iterating thread during its own walk follow Go's rules I1-I5.
void writes_during_iteration() {
    heading("3. writes during the map's own iteration (I1-I5)");

    // I1 + I4: erase half the map at the first step; no erased entry appears afterwards, and every
    // entry never erased appears exactly once.
    {
        iterlock::map<int, int> m;
        for (int i = 0; i < 64; ++i) m[i] = i;
        std::set<int> erased;
        std::vector<int> produced;
        for (const auto& kv : m) {
            const int key = kv.first;  // copy: the reference may not survive our own writes
            if (produced.empty()) {
                for (int i = 0; i < 64; ++i) {
                    if (i % 2 == 1 && i != key) {
                        erased.insert(i);
                        m.erase(i);
                    }
                }
            }
            produced.push_back(key);
        }
        std::size_t bad = 0;
        for (int k : produced) bad += erased.count(k);
        std::printf("I1: erased %zu entries at the first step; %zu of them were produced later\n",
                    erased.size(), bad);
        expect(bad == 0, "I1: an entry erased before the walk reaches it is not produced");
        expect(produced.size() == 64 - erased.size(), "I4: each surviving entry is produced exactly once");
    }

    // I2 + I3 + I4 across growth: inserting 1000 entries at the first step grows the table mid-walk.
    {
        iterlock::map<int, int> m;
        for (int i = 0; i < 8; ++i) m[i] = i;
        std::multiset<int> produced;
        for (const auto& kv : m) {
            const int key = kv.first;
            if (produced.empty()) {
                for (int i = 100; i < 1100; ++i) m[i] = i;
            }
            produced.insert(key);
        }
        bool once = true;
        for (int k : produced) once = once && produced.count(k) == 1;
        std::size_t originals = 0;
        for (int i = 0; i < 8; ++i) originals += produced.count(i);
        std::printf(
            "I2/I3: the walk grew the table from 8 to %zu entries; it produced %zu of the 1000 new"
            " ones (any number is allowed), no entry twice: %s\n",
            m.size(), produced.size() - originals, once ? "yes" : "NO");
        expect(once, "I3: no entry is produced twice, also across growth");
        expect(originals == 8, "I4: the 8 entries present throughout are each produced");
        m.check_invariants();
    }

    // I5: clear() ends the walk: the next increment makes the iterator equal to end().
    {
        iterlock::map<int, int> m;
        for (int i = 0; i < 20; ++i) m[i] = i;
        int steps = 0;
        bool ended_at_next_step = false;
        for (auto it = m.begin(); it != m.end(); ++it) {
            if (++steps == 3) {
                m.clear();  // do not dereference `it` after this
                auto next = it;
                ended_at_next_step = ++next == m.end();
            }
        }
        std::printf("I5: clear() at step 3 ended the walk (steps %d, size %zu)\n", steps, m.size());
        expect(steps == 3 && m.empty(), "I5: clear during iteration ends it cleanly");
        expect(ended_at_next_step, "I5: the increment after clear() reaches end()");
    }

    // erase_if: Go's `for k, v := range m { if cond { delete(m, k) } }` in one call.
    {
        iterlock::map<int, int> m;
        for (int i = 0; i < 10; ++i) m[i] = i;
        const auto n = iterlock::erase_if(m, [](const int& k, int&) { return k % 3 == 0; });
        std::printf("erase_if(k %% 3 == 0) removed %zu, %zu left\n", static_cast<std::size_t>(n), m.size());
        expect(n == 4 && m.size() == 6, "erase_if removes exactly the matching entries");
    }
}

// (4) A write while another thread's iterator is alive is misuse, caught every time.
void misuse_detection() {
    heading("4. misuse detection (throw mode)");
    const iterlock::misuse_action previous = iterlock::get_misuse_action();
    iterlock::set_misuse_action(iterlock::misuse_action::throw_exception);

    iterlock::map<int, int> shared{{1, 1}, {2, 2}};
    std::latch iterating(1);
    std::latch release(1);
    std::thread reader([&] {
        auto it = shared.begin();  // alive, though it never steps, until `release`
        iterating.count_down();
        release.wait();
        (void)it;
    });
    iterating.wait();
    std::string message;
    try {
        shared[3] = 3;
    } catch (const iterlock::concurrent_misuse& e) {
        message = e.what();
    }
    release.count_down();
    reader.join();
    std::printf("write while another thread iterates -> concurrent_misuse: \"%s\"\n", message.c_str());
    expect(message == "concurrent map iteration and map write", "the detector reports Go's message");
    expect(!shared.contains(3), "the detector throws before the map is modified");

    shared[3] = 3;  // the other thread's iterator is gone: writing is legal again
    expect(shared.size() == 3, "writes succeed once no foreign iterator is alive");
    std::printf("after the reader finished, the same write succeeds (size %zu)\n", shared.size());
    iterlock::set_misuse_action(previous);  // default: print "fatal error: <message>" and abort
}

// (5) Growth is incremental, as in Go: a grow doubles the bucket array, then each later write evacuates
// a bucket or two from the old array until none are left.
void incremental_growth() {
    heading("5. incremental growth");
    using access = iterlock::detail::map_test_access;
    iterlock::map<int, int> m;
    auto shape = [&] {
        return std::to_string(static_cast<unsigned long long>(access::table(m).bucket_shift())) + "/" +
               std::to_string(static_cast<unsigned long long>(access::bucket_count(m))) + "/" +
               (access::table(m).growing() ? "growing" : "settled");
    };
    std::string last = shape();
    int grow_steps = 0;
    std::printf("%6s  %s\n", "size", "B / buckets / state / overflow buckets");
    std::printf("%6zu  %s / %llu\n", m.size(), last.c_str(),
                static_cast<unsigned long long>(access::table(m).overflow_buckets()));
    for (int i = 0; i < 2000; ++i) {
        m[i] = i;
        if (access::table(m).growing()) ++grow_steps;
        const std::string now = shape();
        if (now != last) {
            std::printf("%6zu  %s / %llu\n", m.size(), now.c_str(),
                        static_cast<unsigned long long>(access::table(m).overflow_buckets()));
            last = now;
        }
    }
    std::printf("%d of 2000 inserts left a growth in progress (Go's evacuation is spread over writes)\n",
                grow_steps);
    expect(grow_steps > 0, "growth is incremental: some writes finish with a grow still in progress");
    expect(access::table(m).bucket_shift() > 0, "2000 entries need more than one bucket");
    m.check_invariants();
}

}  // namespace

int main() {
    iteration_order();
    lookups();
    writes_during_iteration();
    misuse_detection();
    incremental_growth();
    if (failures != 0) {
        std::printf("\n%d check(s) FAILED\n", failures);
        return 1;
    }
    std::printf("\nall checks passed\n");
    return 0;
}
