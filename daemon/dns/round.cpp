#include "dns/round.hpp"

#include <algorithm>

namespace fqdnd::dns {

bool Round::add(uint16_t queue, uint32_t id, Outcome& out, Clock::time_point arrived)
{
    bool held = !out.ops.empty();
    if (!held && !adding_.empty())
        for (const auto& l : out.learned)
            held = held || std::any_of(l.addresses.begin(), l.addresses.end(),
                                       [&](const Address& a) { return adding_.count(a) > 0; });
    if (!out.ops.empty()) {
        for (const auto& op : out.ops)
            if (op.kind == cache::ElementOp::Kind::add)
                adding_.insert(op.address);
        ops_.insert(ops_.end(), std::make_move_iterator(out.ops.begin()), std::make_move_iterator(out.ops.end()));
        out.ops.clear();
        holds_.push_back(arrived);
    }
    verdicts_.push_back(Verdict{queue, id, out.accept, held, std::move(out.replacement), false});
    return held;
}

size_t Round::release(bool held_too, const std::function<void(const Verdict&)>& send)
{
    size_t sent = 0;
    for (Verdict& v : verdicts_) {
        if (v.sent || (v.held && !held_too))
            continue;
        send(v);
        v.sent = true;
        ++sent;
    }
    return sent;
}

void Round::clear()
{
    verdicts_.clear();
    ops_.clear();
    adding_.clear();
    holds_.clear();
}

} // namespace fqdnd::dns
