import BasinIO
import Foundation

/// An evaluator outside Basin (lm-evaluation-harness on a GPU machine, a cluster job, a script): a shell command run
/// with a candidate model's folder appended as its last argument.
///
/// Contract: the command prints exactly one JSON object of named metrics on standard output (numbers; nested
/// objects are flattened with dots, `{"hellaswag": {"acc": 0.5}}` -> `hellaswag.acc`); it exits 0. A non-zero exit
/// marks the candidate as failed and its standard error is shown. The command runs through `/bin/sh -c`, so it may
/// be a pipeline or carry its own arguments: `CMD "$candidate"` is what runs.
public struct ExternalEvaluator: Sendable {
    public var command: String
    /// Give up after this many seconds: the evaluator's whole process group is stopped and the candidate
    /// fails (nil: wait as long as it takes).
    public var timeout: Double?

    /// An hour: an LLM benchmark on one GPU fits; a hung evaluator does not hold a soup for ever.
    public static let defaultTimeout = 3600.0
    /// The range `--evaluate-timeout` accepts: a second to a week.
    public static let timeoutRange = 1.0...604_800.0
    /// Standard output beyond this is not a JSON object of metrics: the evaluator is stopped.
    public static let outputLimit = 4 << 20

    public init(command: String, timeout: Double? = ExternalEvaluator.defaultTimeout) {
        self.command = command
        self.timeout = timeout
    }

    /// Runs the command on one candidate and returns its metrics. The command runs in its own process group
    /// (`ChildProcess`): past the timeout, or once it prints more than `outputLimit` bytes, the group is
    /// stopped and the candidate fails with `evaluatorFailed` saying why.
    public func evaluate(_ candidate: URL) throws -> [String: Double] {
        let r: ChildProcess.Result
        do {
            r = try ChildProcess.run(shell: command + " \"$1\"", arguments: ["basin-evaluate", candidate.path], timeout: timeout,
                                     outputLimit: Self.outputLimit)
        } catch {
            throw MergeError(.evaluatorFailed, file: candidate.path, "cannot start the evaluator '\(command)': \(error)")
        }
        var errText = String(decoding: r.standardError, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if r.standardErrorTruncated { errText = "...\n" + errText }
        let detail = errText.isEmpty ? "" : ":\n" + errText
        switch r.ending {
        case .exited(0):
            return try Self.parseMetrics(r.standardOutput, command: command, candidate: candidate)
        case let .exited(status):
            throw MergeError(.evaluatorFailed, file: candidate.path, "the evaluator '\(command)' exited with status \(status)" + detail)
        case let .signalled(sig):
            throw MergeError(.evaluatorFailed, file: candidate.path, "the evaluator '\(command)' was killed by signal \(sig)" + detail)
        case let .timedOut(seconds):
            throw MergeError(.evaluatorFailed, file: candidate.path,
                             "the evaluator '\(command)' did not finish within \(Self.describe(seconds)) (--evaluate-timeout); it and everything it started were stopped" + detail)
        case let .outputTooLarge(limit):
            throw MergeError(.evaluatorFailed, file: candidate.path,
                             "the evaluator '\(command)' printed more than \(limit >> 20) MiB on standard output (it must print one JSON object of metrics); it and everything it started were stopped")
        }
    }

    static func describe(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
    }

    /// Reads the evaluator's standard output: exactly one JSON object of numbers (nested objects flattened).
    public static func parseMetrics(_ data: Data, command: String, candidate: URL) throws -> [String: Double] {
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) as? [String: Any] else {
            let shown = text.count > 300 ? String(text.prefix(300)) + "..." : text
            throw MergeError(.evaluatorFailed, file: candidate.path,
                             "the evaluator '\(command)' must print one JSON object of metrics on standard output; it printed: \(shown.isEmpty ? "nothing" : shown)")
        }
        var metrics: [String: Double] = [:]
        func flatten(_ value: Any, _ key: String) throws {
            if let n = value as? NSNumber {
                let d = n.doubleValue
                guard d.isFinite else { throw MergeError(.evaluatorFailed, file: candidate.path, key: key, "is not a finite number") }
                metrics[key] = d
            } else if let m = value as? [String: Any] {
                for (k, v) in m { try flatten(v, key.isEmpty ? k : key + "." + k) }
            } else {
                throw MergeError(.evaluatorFailed, file: candidate.path, key: key, "is not a number (metrics must be numbers or objects of numbers)")
            }
        }
        try flatten(object, "")
        guard !metrics.isEmpty else { throw MergeError(.evaluatorFailed, file: candidate.path, "the evaluator '\(command)' printed no metrics") }
        return metrics
    }

    /// Whether a larger value of the metric is better: losses, perplexities and error rates are minimised.
    public static func higherIsBetter(_ metric: String) -> Bool {
        let m = metric.lowercased()
        return !["loss", "perplexity", "ppl", "error", "err", "bits_per_byte", "bpb", "wer", "cer"].contains { m.contains($0) }
    }
}

/// Candidates evaluated N at a time in the background: the explorer (or any caller) submits and gets a callback
/// when the metrics arrive, never blocking its own thread.
public final class EvaluationQueue: @unchecked Sendable {
    public let evaluator: ExternalEvaluator
    public let jobs: Int
    private let semaphore: DispatchSemaphore
    private let group = DispatchGroup()
    private let queue = DispatchQueue(label: "basin.evaluate", attributes: .concurrent)

    public init(evaluator: ExternalEvaluator, jobs: Int) {
        self.evaluator = evaluator
        self.jobs = max(1, jobs)
        semaphore = DispatchSemaphore(value: max(1, jobs))
    }

    /// Evaluates `candidate` (its folder must exist when the job starts); `completion` runs on a background thread.
    public func submit(_ candidate: URL, completion: @escaping @Sendable (Result<[String: Double], Error>) -> Void) {
        submit({ candidate }, completion: completion)
    }

    /// Prepares a candidate (e.g. writes a merge to a folder) and evaluates it, both off the caller's thread.
    public func submit(_ prepare: @escaping @Sendable () throws -> URL, completion: @escaping @Sendable (Result<[String: Double], Error>) -> Void) {
        group.enter()
        queue.async { [self] in
            semaphore.wait()
            let result = Result { try evaluator.evaluate(try prepare()) }
            semaphore.signal()
            completion(result)
            group.leave()
        }
    }

    /// Blocks until every submitted candidate has finished.
    public func waitAll() { group.wait() }

    /// Evaluates every candidate (N at a time) and returns the results in order.
    public func evaluateAll(_ candidates: [@Sendable () throws -> URL]) -> [Result<[String: Double], Error>] {
        let results = ConcurrentSlots<Result<[String: Double], Error>>(count: candidates.count)
        for (i, c) in candidates.enumerated() {
            submit(c) { results.set(i, $0) }
        }
        waitAll()
        return candidates.indices.map { results[$0] ?? .failure(MergeError(.evaluatorFailed, "not evaluated")) }
    }
}

/// Streams a recipe into a fresh candidate folder (for an external evaluator): `basin soup --evaluate` and the
/// explorer's soup view call this for every candidate.
public enum CandidateWriter {
    public static func write(_ recipe: MergeRecipe, into folder: URL, options: MergeRunOptions = MergeRunOptions()) throws -> URL {
        _ = try MergeExecutor.run(try MergePlan(recipe: recipe), out: folder, options: options)
        return folder
    }
}
