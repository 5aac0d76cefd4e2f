import Foundation

/// One value per index, set from several threads at once (each worker of a `concurrentPerform` or an evaluation
/// queue fills its own slot) and read once they are done; nil for a slot nobody set. The input hasher's and the
/// bench's per-file digests, the evaluation queue's per-candidate results and TIES's per-model samples all use it.
final class ConcurrentSlots<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Value?]

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ i: Int, _ value: Value) {
        lock.lock()
        slots[i] = value
        lock.unlock()
    }

    subscript(i: Int) -> Value? {
        lock.lock()
        defer { lock.unlock() }
        return slots[i]
    }
}

extension ConcurrentSlots where Value == Result<String, Error> {
    /// Input file `i`'s SHA-256, or the error hashing it threw.
    func digest(_ i: Int) throws -> String {
        guard let r = self[i] else { throw MergeError(.output, "input digest \(i) was not computed") }
        return try r.get()
    }
}
