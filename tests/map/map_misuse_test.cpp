// Misuse detection tests (Policy detect_misuse): Go's three fatal errors, "concurrent map writes",
// "concurrent map read and map write" and "concurrent map iteration and map write", plus "map moved while
// an iteration is live". Each scenario is deterministic and race-free: a thread is parked *inside* a map
// write (in KeyEqual, via iterlock::test::gate) or holds a live iterator, and the other thread acts only
// after a latch says so. Death tests use the "threadsafe" style (re-exec), which also works under TSan.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <latch>
#include <optional>
#include <string>
#include <thread>

#include "iterlock/map.hpp"
#include "support/element_types.hpp"
#include "support/filled_map.hpp"
#include "support/key_gate.hpp"
#include "support/misuse_action_scope.hpp"

namespace {

using iterlock::test::constant_hash;
using iterlock::test::gate;
using iterlock::test::gate_equal;
using iterlock::test::misuse_action_scope;
using gated_map = iterlock::map<int, int, constant_hash, gate_equal>;
using int_map = iterlock::map<int, int>;

constexpr const char* writes_re = "fatal error: concurrent map writes";
constexpr const char* read_write_re = "fatal error: concurrent map read and map write";
constexpr const char* iteration_write_re = "fatal error: concurrent map iteration and map write";

class MapMisuse : public ::testing::Test {
  protected:
    void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// Parks a writer thread inside `m.insert_or_assign(2, 2)` (KeyEqual compares 2 with the resident key 1,
// and every key hashes alike, so the compare happens mid-write). The destructor releases and joins it.
class parked_writer {
  public:
    explicit parked_writer(gated_map& m) : m_(m) {
        g_.arm();
        thread_ = std::thread([this] {
            try {
                m_.insert_or_assign(2, 2);
            } catch (...) {
                error_ = std::current_exception();
            }
        });
        g_.entered.wait();
    }
    parked_writer(const parked_writer&) = delete;
    parked_writer& operator=(const parked_writer&) = delete;
    ~parked_writer() { finish(); }

    // Lets the writer complete its write; returns whatever it threw (nullptr: nothing).
    std::exception_ptr finish() {
        if (thread_.joinable()) {
            g_.release.count_down();
            thread_.join();
        }
        return error_;
    }

  private:
    gated_map& m_;
    gate g_;
    std::thread thread_;
    std::exception_ptr error_;
};

gated_map make_gated() {
    gated_map m;
    m.insert({1, 1});  // the gate is disarmed, nothing parks here
    return m;
}

// Runs touch(m) on this thread while another thread is parked inside a write to a fresh gated map m (named
// `name` when given, before the writer starts); used inside EXPECT_DEATH, whose child the misuse ends.
template <class Touch>
void during_parked_write(Touch touch, const char* name = nullptr) {
    gated_map m = make_gated();
    if (name != nullptr) m.set_name(name);
    parked_writer w(m);
    touch(m);
}

// Under misuse_action::throw_exception: touch() must throw concurrent_misuse whose what() is exactly Go's
// `words`; `misuse` names what touch() did, for the failure when nothing was thrown.
template <class Touch>
void expect_misuse_thrown(Touch touch, const char* words, const char* misuse) {
    try {
        touch();
        ADD_FAILURE() << misuse << " was not detected";
    } catch (const iterlock::concurrent_misuse& e) {
        EXPECT_STREQ(e.what(), words);
    }
}

// Keeps an iterator of `m`, created on another thread, alive (and never stepped) until destruction.
template <class Map>
class foreign_iterator {
  public:
    explicit foreign_iterator(Map& m) {
        thread_ = std::thread([this, &m] {
            auto it = m.begin();
            live_.count_down();
            done_.wait();
            (void)it;
        });
        live_.wait();
    }
    foreign_iterator(const foreign_iterator&) = delete;
    foreign_iterator& operator=(const foreign_iterator&) = delete;
    ~foreign_iterator() { release(); }
    void release() {
        if (thread_.joinable()) {
            done_.count_down();
            thread_.join();
        }
    }

  private:
    std::latch live_{1};
    std::latch done_{1};
    std::thread thread_;
};

using iterlock::test::make_filled;

// ---- "concurrent map writes" ---------------------------------------------------------------------------

TEST_F(MapMisuse, ConcurrentWritesAbort) {
    EXPECT_DEATH(during_parked_write([](gated_map& m) { m.insert_or_assign(3, 3); }), writes_re);
}

TEST_F(MapMisuse, ConcurrentWriteViaEraseAborts) {
    EXPECT_DEATH(during_parked_write([](gated_map& m) { m.erase(1); }), writes_re);
}

TEST_F(MapMisuse, ConcurrentWritesThrowInThrowMode) {
    misuse_action_scope mode(iterlock::misuse_action::throw_exception);
    gated_map m = make_gated();
    {
        parked_writer w(m);
        expect_misuse_thrown([&] { m.insert_or_assign(3, 3); }, "concurrent map writes", "second writer");
        EXPECT_EQ(w.finish(), nullptr) << "the first writer must complete normally";
    }
    // The detected write did not modify the map; the parked write completed.
    EXPECT_EQ(m.size(), 2u);
    EXPECT_FALSE(m.contains(3));
    EXPECT_EQ(m.get(2), std::optional<int>(2));
    m.check_invariants();
}

// ---- "concurrent map read and map write" -----------------------------------------------------------------

TEST_F(MapMisuse, ReadDuringWriteAborts) {
    EXPECT_DEATH(during_parked_write([](gated_map& m) { (void)m.contains(5); }), read_write_re);
}

TEST_F(MapMisuse, FindAndGetDuringWriteAbort) {
    EXPECT_DEATH(during_parked_write([](gated_map& m) { (void)m.find(1); }), read_write_re);
    EXPECT_DEATH(during_parked_write([](gated_map& m) { (void)m.get(1); }), read_write_re);
}

TEST_F(MapMisuse, ReadDuringWriteThrowsInThrowMode) {
    misuse_action_scope mode(iterlock::misuse_action::throw_exception);
    gated_map m = make_gated();
    parked_writer w(m);
    expect_misuse_thrown([&] { (void)m.get(1); }, "concurrent map read and map write", "read during a write");
    EXPECT_EQ(w.finish(), nullptr);
    EXPECT_EQ(m.size(), 2u);
    m.check_invariants();
}

// A reader's loop of finds sees a write that starts while the loop runs. The loop holds nothing that
// would keep the compiler from reading the writing flag once before the loop (no atomic, no call that may
// write memory: int keys, std::equal_to, and the map's own hash): only the flag's read itself
// (detail::racy_flag_load, a volatile access) makes every find read it again. The writer parks in the
// value's constructor, after it raised the flag and reserved its slot, so the reader's finds touch no byte
// the writer writes, and resumes once the reader reported (or ran out of finds: the test then fails, it
// does not hang). Were the flag's read hoisted, the reader would run all its finds without a report.
struct parking_value {
    static inline std::atomic<bool> park{false};
    static inline std::atomic<bool> parked{false};
    static inline std::atomic<bool> resume{false};
    int v = 0;
    parking_value() = default;
    explicit parking_value(int x) : v(x) {
        if (park.load()) {
            parked.store(true);
            while (!resume.load()) std::this_thread::yield();
        }
    }
};

TEST_F(MapMisuse, ReaderLoopSeesAWriteThatStartsDuringIt) {
    misuse_action_scope mode(iterlock::misuse_action::throw_exception);
    iterlock::map<int, parking_value> m;
    m.reserve(64);  // room: the write below reserves a slot and changes nothing else before it parks
    for (int k = 0; k < 8; ++k) m.try_emplace(k, k);
    parking_value::parked.store(false);
    parking_value::resume.store(false);
    parking_value::park.store(true);
    std::atomic<bool> reading{false};
    std::atomic<bool> reported{false};
    long finds = 0;
    std::thread reader([&] {
        reading.store(true);
        long found = 0;  // a register: a store to memory in the loop could stand for the flag's reload
        try {
            for (long i = 0; i < 4'000'000'000L; ++i) found += m.contains(1) ? 1 : 0;
        } catch (const iterlock::concurrent_misuse& e) {
            EXPECT_STREQ(e.what(), "concurrent map read and map write");
            reported.store(true);
        }
        finds = found;
        parking_value::resume.store(true);  // reported or out of finds: let the writer finish
    });
    while (!reading.load()) std::this_thread::yield();
    std::thread writer([&] { m.try_emplace(100, 100); });
    reader.join();
    writer.join();
    EXPECT_TRUE(parking_value::parked.load()) << "the writer never parked";
    EXPECT_TRUE(reported.load()) << "the reader ran " << finds << " finds through a write without seeing it";
    EXPECT_EQ(m.size(), 9u);
    m.check_invariants();
    parking_value::park.store(false);
}

// ---- "concurrent map iteration and map write" -----------------------------------------------------------

TEST_F(MapMisuse, WriteWhileOtherThreadHoldsIteratorAborts) {
    EXPECT_DEATH(
        {
            int_map m = make_filled(100);
            foreign_iterator<int_map> it(m);
            m.insert_or_assign(1000, 1);
        },
        iteration_write_re);
}

TEST_F(MapMisuse, SlowWriterIsCaughtEveryTime) {
    // The iterator is alive but never steps; the writer pauses 1 ms between writes. Detection must not
    // depend on the iterator stepping at the right moment (Go's check is in mapiternext and can miss).
    for (int round = 0; round < 20; ++round) {
        EXPECT_DEATH(
            {
                int_map m = make_filled(100);
                foreign_iterator<int_map> it(m);
                for (int i = 0; i < 5; ++i) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                    m.insert_or_assign(1000 + i, i);
                }
            },
            iteration_write_re)
            << "round " << round;
    }
}

TEST_F(MapMisuse, EraseAndClearWhileOtherThreadHoldsIteratorAbort) {
    EXPECT_DEATH(
        {
            int_map m = make_filled(10);
            foreign_iterator<int_map> it(m);
            m.erase(3);
        },
        iteration_write_re);
    EXPECT_DEATH(
        {
            int_map m = make_filled(10);
            foreign_iterator<int_map> it(m);
            m.clear();
        },
        iteration_write_re);
}

TEST_F(MapMisuse, WriteWhileOwnAndForeignIteratorsAreLiveAborts) {
    // The writer holds an iterator too: the other thread's live iterator must still be noticed.
    EXPECT_DEATH(
        {
            int_map m = make_filled(100);
            auto own = m.begin();
            foreign_iterator<int_map> it(m);
            m.insert_or_assign(1000, 1);
        },
        iteration_write_re);
    EXPECT_DEATH(
        {
            int_map m = make_filled(100);
            foreign_iterator<int_map> it(m);
            auto own = m.begin();
            m.insert_or_assign(1000, 1);
        },
        iteration_write_re);
}

// Thread B iterates briefly while main holds an iterator (concurrent reads are legal), then B's iterator is
// gone: main's write during its own iteration is legal again (only *another* thread's live iterator makes a
// write misuse). FAILS with map.hpp at 81a60cc: the live-iterator word keeps the "shared owner" tag until
// the count drops to zero, so main's own write is reported as "concurrent map iteration and map write".
// Disabled until the lead decides (fix, or document the conservative report).
TEST_F(MapMisuse, OwnIterationAfterForeignIteratorEndedIsNotReported) {
    misuse_action_scope mode(iterlock::misuse_action::throw_exception);
    int_map m = make_filled(100);
    auto own = m.begin();
    std::thread b([&] {
        auto other = m.begin();
        (void)other;
    });
    b.join();
    EXPECT_NO_THROW(m.insert_or_assign(1000, 1)) << "a foreign iterator that no longer exists was reported";
    EXPECT_EQ(m.size(), 101u);
}

TEST_F(MapMisuse, IterationStartedDuringWriteAborts) {
    // Go reports this from mapiternext; a begin() while another thread is mid-write is either message.
    EXPECT_DEATH(during_parked_write([](gated_map& m) {
                     auto it = m.begin();
                     (void)it;
                 }),
                 "fatal error: concurrent map (iteration|read) and map write");
}

TEST_F(MapMisuse, IterationWriteThrowsBeforeModifying) {
    misuse_action_scope mode(iterlock::misuse_action::throw_exception);
    int_map m = make_filled(100);
    {
        foreign_iterator<int_map> it(m);
        expect_misuse_thrown([&] { m.insert_or_assign(1000, 1); }, "concurrent map iteration and map write",
                             "write during a foreign iteration");
        EXPECT_THROW(m.erase(5), iterlock::concurrent_misuse);
    }
    EXPECT_EQ(m.size(), 100u);
    EXPECT_FALSE(m.contains(1000));
    EXPECT_TRUE(m.contains(5));
    m.check_invariants();
    // The iterator died with its thread: writing is legal again.
    EXPECT_NO_THROW(m.insert_or_assign(1000, 1));
    EXPECT_EQ(m.size(), 101u);
}

TEST_F(MapMisuse, IteratingThreadMayWriteItself) {
    // Rules I1-I5: writes by the thread that owns the iteration are legal, on any thread.
    misuse_action_scope mode(iterlock::misuse_action::throw_exception);
    int_map m = make_filled(200);
    std::exception_ptr error;
    std::thread t([&] {
        try {
            int next = 1000;
            for (auto it = m.begin(); it != m.end(); ++it) {
                const int k = it->first;
                it->second += 1;
                if (k < 1000 && k % 2 == 0) m.erase(k);  // erases the current entry: no deref after this
                if (k < 1000) m.insert_or_assign(next++, 0);
            }
            for (auto& kv : m) kv.second = 0;  // a second iteration on the same thread
            m.clear();
        } catch (...) {
            error = std::current_exception();
        }
    });
    t.join();
    EXPECT_EQ(error, nullptr) << "a write by the iterating thread itself was reported as misuse";
    EXPECT_TRUE(m.empty());
    m.check_invariants();
}

TEST_F(MapMisuse, MainThreadIteratesAndWritesWhileIdleThreadExists) {
    misuse_action_scope mode(iterlock::misuse_action::throw_exception);
    int_map m = make_filled(50);
    std::latch go{1};
    std::thread idle([&] { go.wait(); });  // another thread exists but never touches the map
    EXPECT_NO_THROW({
        for (auto it = m.begin(); it != m.end(); ++it) {
            if (it->first < 1000) m.insert_or_assign(it->first + 1000, 0);
        }
    });
    go.count_down();
    idle.join();
    m.check_invariants();
}

TEST_F(MapMisuse, SequentialHandOffBetweenThreadsIsNotReported) {
    // Properly synchronized use from many threads, including iterators that ended, is not misuse.
    misuse_action_scope mode(iterlock::misuse_action::throw_exception);
    int_map m;
    for (int round = 0; round < 8; ++round) {
        std::exception_ptr error;
        std::thread t([&] {
            try {
                for (int i = 0; i < 100; ++i) m.insert_or_assign(round * 100 + i, i);
                std::size_t n = 0;
                for (auto it = m.begin(); it != m.end(); ++it) ++n;
                if (n != m.size()) throw std::logic_error("iteration count");
            } catch (...) {
                error = std::current_exception();
            }
        });
        t.join();
        ASSERT_EQ(error, nullptr) << "round " << round;
        {
            auto it = m.begin();  // an iterator on the main thread, destroyed before the next round
            (void)it;
        }
    }
    EXPECT_EQ(m.size(), 800u);
}

TEST_F(MapMisuse, NoMisuseDetectionPolicyDoesNotReport) {
    using quiet_map = iterlock::map<int, int, iterlock::hash<int>, std::equal_to<int>,
                                    std::allocator<std::pair<const int, int>>, iterlock::no_misuse_detection>;
    misuse_action_scope mode(iterlock::misuse_action::throw_exception);
    quiet_map m;
    for (int i = 0; i < 10; ++i) m.insert({i, i});
    foreign_iterator<quiet_map> it(m);
    EXPECT_NO_THROW(m.insert_or_assign(100, 1));
    it.release();
    EXPECT_EQ(m.size(), 11u);
}

TEST_F(MapMisuse, EraseIfPredicateThatReadsTheMapIsReported) {
    // erase_if is a write: a predicate that looks the map up reads during that write.
    misuse_action_scope mode(iterlock::misuse_action::throw_exception);
    int_map m = make_filled(20);
    expect_misuse_thrown([&] { m.erase_if([&](const int&, int&) { return m.contains(1); }); },
                         "concurrent map read and map write", "a read from inside erase_if's predicate");
    // The aborted write ended cleanly: the map is intact and later writes are not misreported.
    EXPECT_EQ(m.size(), 20u);
    EXPECT_NO_THROW(m.insert_or_assign(100, 1));
    m.check_invariants();
}

// ---- moving a map while an iteration is live --------------------------------------------------------------

TEST_F(MapMisuse, MoveConstructWhileIteratingAborts) {
    int_map m = make_filled(10);
    auto it = m.begin();
    EXPECT_DEATH({ int_map moved(std::move(m)); }, "map moved while an iteration is live");
    (void)it;
}

TEST_F(MapMisuse, MoveAssignWhileIteratingAborts) {
    int_map m = make_filled(10);
    auto it = m.begin();
    EXPECT_DEATH(
        {
            int_map other;
            other = std::move(m);
        },
        "map moved while an iteration is live");
    (void)it;
}

TEST_F(MapMisuse, MoveAfterIterationEndedIsFine) {
    int_map m = make_filled(10);
    {
        std::size_t n = 0;
        for (auto it = m.begin(); it != m.end(); ++it) ++n;
        EXPECT_EQ(n, 10u);
    }
    int_map moved(std::move(m));
    EXPECT_EQ(moved.size(), 10u);
    EXPECT_TRUE(m.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
}

// ---- issue 13 item 13: messages that say what happened, and which map --------------------------------

// Copy and initializer-list assignment to a map under iteration used to say "map moved while an iteration
// is live": they now say what happened.
TEST_F(MapMisuse, Item13_CopyAssignmentDuringIterationSaysAssigned) {
    int_map m = make_filled(10);
    auto it = m.begin();
    EXPECT_DEATH(
        {
            const int_map other = make_filled(3);
            m = other;
        },
        "fatal error: map assigned while an iteration is live \\(iterlock::map<int, int>\\)");
    (void)it;
}

TEST_F(MapMisuse, Item13_InitializerListAssignmentDuringIterationSaysAssigned) {
    int_map m = make_filled(10);
    auto it = m.begin();
    const auto assign = [&] { m = {{1, 2}, {3, 4}}; };
    EXPECT_DEATH(assign(), "fatal error: map assigned while an iteration is live");
    (void)it;
}

// Move assignment names the side that is iterated: the target is assigned, the source moved. Swapping says
// swapped. Without iterators all of these still work, and assignment keeps the target's name.
TEST_F(MapMisuse, Item13_MoveAssignmentAndSwapSayWhatHappened) {
    int_map target = make_filled(10);
    auto it = target.begin();
    EXPECT_DEATH({ target = make_filled(3); }, "fatal error: map assigned while an iteration is live");
    EXPECT_DEATH(
        {
            int_map other;
            other.swap(target);
        },
        "fatal error: map swapped while an iteration is live");
    (void)it;
    it = int_map::iterator();
    target.set_name("target");
    int_map source = make_filled(3);
    source.set_name("source");
    target = {{7, 70}};
    EXPECT_EQ(target.size(), 1u);
    EXPECT_EQ(target.get(7), std::optional<int>(70));
    target = source;
    EXPECT_EQ(target.size(), 3u);
    EXPECT_STREQ(target.name(), "target");
    target = std::move(source);
    EXPECT_STREQ(target.name(), "target");
    int_map copy(target);
    EXPECT_STREQ(copy.name(), "target");
    target.check_invariants();
}

// Go's words, then iterlock's container, its key and mapped types, and the name the program gave the map.
TEST_F(MapMisuse, Item13_AbortMessagesNameIterlockAndTheMap) {
    EXPECT_DEATH(during_parked_write([](gated_map& m) { m.insert_or_assign(3, 3); }, "sessions"),
                 "fatal error: concurrent map writes \\(iterlock::map<int, int> \"sessions\"\\)");
    EXPECT_DEATH(during_parked_write([](gated_map& m) { m.insert_or_assign(3, 3); }),
                 "fatal error: concurrent map writes \\(iterlock::map<int, int>\\)");
    EXPECT_DEATH(during_parked_write([](gated_map& m) { (void)m.contains(5); }, "sessions"),
                 "fatal error: concurrent map read and map write \\(iterlock::map<int, int> \"sessions\"\\)");
    EXPECT_DEATH(
        {
            int_map m = make_filled(100);
            m.set_name("orders");
            foreign_iterator<int_map> it(m);
            m.insert_or_assign(1000, 1);
        },
        "fatal error: concurrent map iteration and map write \\(iterlock::map<int, int> \"orders\"\\)");
    EXPECT_DEATH(
        {
            int_map m = make_filled(10);
            m.set_name("orders");
            auto it = m.begin();
            int_map moved(std::move(m));
        },
        "fatal error: map moved while an iteration is live \\(iterlock::map<int, int> \"orders\"\\)");
}

// With throw_exception, what() stays Go's words alone (programs compare it), whatever the map's name.
TEST_F(MapMisuse, Item13_ExceptionTextIsGoWordsAlone) {
    misuse_action_scope mode(iterlock::misuse_action::throw_exception);
    gated_map m = make_gated();
    m.set_name("sessions");
    parked_writer w(m);
    expect_misuse_thrown([&] { m.insert_or_assign(3, 3); }, "concurrent map writes", "second writer");
    EXPECT_EQ(w.finish(), nullptr);
}

}  // namespace
