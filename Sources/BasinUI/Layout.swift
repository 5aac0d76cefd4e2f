/// How much of a split a part takes.
package enum Constraint: Hashable, Sendable {
    case fixed(Int)
    case percent(Int)
    /// Shares what is left after fixed and percent parts, by weight.
    case fill(Int = 1)
}

package enum Direction: Sendable { case horizontal, vertical }

extension Rect {
    /// Splits along `direction` (horizontal = side by side columns, vertical = stacked rows).
    /// Fixed and percent parts are taken first (clipped to what is available), then fills share
    /// the remainder by weight; the last fill absorbs rounding. `spacing` cells go between parts.
    package func split(_ direction: Direction, _ constraints: [Constraint], spacing: Int = 0) -> [Rect] {
        guard !constraints.isEmpty else { return [] }
        let total = direction == .horizontal ? width : height
        let gaps = spacing * max(0, constraints.count - 1)
        var avail = max(0, total - gaps)
        var sizes = Array(repeating: 0, count: constraints.count)
        for (i, c) in constraints.enumerated() {
            switch c {
            case .fixed(let n): sizes[i] = min(max(0, n), avail); avail -= sizes[i]
            case .percent(let p): sizes[i] = min(max(0, total * p / 100), avail); avail -= sizes[i]
            case .fill: break
            }
        }
        let fills = constraints.enumerated().compactMap { i, c -> (Int, Int)? in
            if case .fill(let w) = c { return (i, max(1, w)) }
            return nil
        }
        let weight = fills.reduce(0) { $0 + $1.1 }
        var left = avail
        for (k, (i, w)) in fills.enumerated() {
            let n = k == fills.count - 1 ? left : avail * w / weight
            sizes[i] = n
            left -= n
        }
        var out: [Rect] = []
        var pos = direction == .horizontal ? x : y
        for s in sizes {
            if direction == .horizontal {
                out.append(Rect(x: pos, y: y, width: s, height: height))
            } else {
                out.append(Rect(x: x, y: pos, width: width, height: s))
            }
            pos += s + spacing
        }
        return out
    }

    package func columns(_ constraints: Constraint..., spacing: Int = 0) -> [Rect] {
        split(.horizontal, constraints, spacing: spacing)
    }
    package func rows(_ constraints: Constraint..., spacing: Int = 0) -> [Rect] {
        split(.vertical, constraints, spacing: spacing)
    }
}
