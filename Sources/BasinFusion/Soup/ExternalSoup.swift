import BasinIO
import Foundation

/// Soups of models too large for Basin's own evaluator (LLMs): every candidate (each ingredient, the uniform soup,
/// each greedy step) is streamed into a Hugging Face folder and scored by an `ExternalEvaluator`, N at a time where
/// the candidates do not depend on each other. The greedy soup follows Wortsman et al. 2022: ingredients ranked by
/// the metric, the soup starts as the best and takes each next one if the uniform average with it is not worse.
public struct ExternalSoup: Sendable {
    public struct Row: Sendable, Codable {
        public var name: String
        public var kind: String
        public var metrics: [String: Double]?
        /// The evaluator's message when the candidate failed.
        public var failure: String?
    }

    public struct Result: Sendable {
        public var rows: [Row]
        /// The chosen soup's ingredients (indices into the models), in the order added.
        public var chosen: [Int]
        /// The recipe of the chosen soup (uniform linear over the chosen ingredients).
        public var recipe: MergeRecipe
        /// The metric the greedy soup chose by (nil for a uniform soup).
        public var metric: String?
        /// Everything the evaluator reported for the chosen soup (nil when it was not evaluated or failed).
        public var chosenMetrics: [String: Double]?
    }

    public var models: [String]
    public var evaluator: ExternalEvaluator
    public var jobs: Int
    /// The metric the greedy soup chooses by, and whether larger is better.
    public var metric: String?
    public var higherIsBetter: Bool?
    /// Where candidate folders are written (each is deleted once evaluated).
    public var workDirectory: URL

    public init(models: [String], evaluator: ExternalEvaluator, jobs: Int, metric: String?, higherIsBetter: Bool?, workDirectory: URL) {
        self.models = models
        self.evaluator = evaluator
        self.jobs = jobs
        self.metric = metric
        self.higherIsBetter = higherIsBetter
        self.workDirectory = workDirectory
    }

    /// The uniform soup of some ingredients as mergekit's linear recipe.
    public func recipe(_ members: [Int]) -> MergeRecipe {
        MergeRecipe(method: .linear, models: members.map { .init(model: models[$0], parameters: ["weight": .scalar(1)]) })
    }

    /// Writes a candidate folder for an ingredient (a folder is passed as it is; a safetensors file is linked into a fresh
    /// folder; another file is written there as safetensors).
    func ingredientCandidate(_ i: Int, folder: URL) throws -> URL {
        let url = URL(fileURLWithPath: models[i])
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue { return url }
        // Not a safetensors file (an ONNX model): written as a candidate like a soup of one.
        if url.pathExtension.lowercased() != "safetensors" { return try CandidateWriter.write(recipe([i]), into: folder) }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent(HuggingFaceModel.singleFileName), withDestinationURL: url.standardizedFileURL)
        return folder
    }

    /// Evaluates the candidates and chooses the soup. `cancel` (e.g. the explorer quitting) stops it before the next
    /// candidate is written; the caller stops running evaluators through `CleanupRegistry`.
    public func run(greedy: Bool, cancel: CancellationFlag? = nil, log: @escaping @Sendable (String) -> Void = { _ in }) throws -> Result {
        try FileManager.default.createDirectory(at: workDirectory, withIntermediateDirectories: true)
        // Interrupted (SIGINT/SIGTERM/SIGHUP), Basin removes the finished candidates too, not only files being written.
        let workToken = CleanupRegistry.register(directory: workDirectory.path)
        defer { CleanupRegistry.unregister(workToken) }
        let registered = CandidateRegistrations(work: workDirectory)
        defer { registered.removeAll() }
        let queue = EvaluationQueue(evaluator: evaluator, jobs: jobs)
        let options = MergeRunOptions()
        let soupFolder = workDirectory.appendingPathComponent("uniform-soup")
        // Ingredients and the uniform soup are independent: evaluate them N at a time.
        var candidates: [@Sendable () throws -> URL] = models.indices.map { i in
            let folder = workDirectory.appendingPathComponent("ingredient-\(i)")
            return { [self] in registered.track(try ingredientCandidate(i, folder: folder)) }
        }
        let uniform = recipe(Array(models.indices))
        if models.count > 1 { candidates.append({ registered.track(try CandidateWriter.write(uniform, into: soupFolder, options: options)) }) }
        log("evaluating \(candidates.count) candidates, \(jobs) at a time")
        let results = queue.evaluateAll(candidates.map { c in { @Sendable in try Self.check(cancel); return try c() } })
        try Self.check(cancel)
        for i in models.indices { registered.remove(workDirectory.appendingPathComponent("ingredient-\(i)")) }
        registered.remove(soupFolder)
        var rows = zip(models, results).map { Self.row($0.0, "ingredient", $0.1) }
        if models.count > 1 { rows.append(Self.row("uniform soup of \(models.count)", "uniform soup", results.last!)) }
        let scored = models.indices.compactMap { i in (try? results[i].get()).map { (i, $0) } }
        guard let first = scored.first?.1 else {
            throw MergeError(.evaluatorFailed, "every ingredient failed its evaluation: " + rows.compactMap(\.failure).joined(separator: "; "))
        }
        let metric = try chooseMetric(first)
        let better = higherIsBetter ?? ExternalEvaluator.higherIsBetter(metric)
        func value(_ m: [String: Double]) -> Double? { m[metric] }
        func isBetterOrEqual(_ a: Double, _ b: Double) -> Bool { better ? a >= b : a <= b }
        var chosen = Array(models.indices)
        var chosenMetrics = models.count > 1 ? try? results.last!.get() : try? results[0].get()
        if greedy {
            let ranked = scored.filter { value($0.1) != nil }.sorted { better ? value($0.1)! > value($1.1)! : value($0.1)! < value($1.1)! }
            guard let best = ranked.first else { throw MergeError(.evaluatorFailed, "no ingredient reported the metric '\(metric)'") }
            chosen = [best.0]
            chosenMetrics = best.1
            var current = value(best.1)!
            for (i, _) in ranked.dropFirst() {
                try Self.check(cancel)
                let trial = chosen + [i]
                let folder = workDirectory.appendingPathComponent("greedy-\(trial.count)")
                log("greedy soup: trying \(trial.map { models[$0] }.joined(separator: " + "))")
                let r = recipe(trial)
                let result = queue.evaluateAll([{ registered.track(try CandidateWriter.write(r, into: folder, options: options)) }])[0]
                registered.remove(folder)
                if let m = try? result.get(), let v = value(m), isBetterOrEqual(v, current) {
                    chosen = trial
                    chosenMetrics = m
                    current = v
                }
            }
            rows.append(Row(name: "greedy soup (\(chosen.count) of \(models.count))", kind: "greedy soup", metrics: [metric: current], failure: nil))
        }
        return Result(rows: rows, chosen: chosen, recipe: recipe(chosen), metric: greedy ? metric : nil, chosenMetrics: chosenMetrics)
    }

    static func check(_ cancel: CancellationFlag?) throws {
        if cancel?.isCancelled == true { throw MergeError(.invalidRequest, "the soup was cancelled") }
    }

    static func row(_ name: String, _ kind: String, _ r: Swift.Result<[String: Double], Error>) -> Row {
        switch r {
        case let .success(m): return Row(name: name, kind: kind, metrics: m, failure: nil)
        case let .failure(e): return Row(name: name, kind: kind, metrics: nil, failure: "\(e)")
        }
    }

    /// The metric to choose by: the one asked for, else the only one, else the one named like an accuracy.
    func chooseMetric(_ example: [String: Double]) throws -> String {
        if let metric {
            guard example[metric] != nil else {
                throw MergeError(.evaluatorFailed, key: metric, "the evaluator reports no such metric (it reports \(example.keys.sorted().joined(separator: ", ")))")
            }
            return metric
        }
        if example.count == 1 { return example.keys.first! }
        let accuracies = example.keys.filter { $0.lowercased().hasSuffix("acc") || $0.lowercased().hasSuffix("accuracy") }.sorted()
        if accuracies.count == 1 { return accuracies[0] }
        throw MergeError(.evaluatorFailed, "choose the metric to soup by with --metric (the evaluator reports \(example.keys.sorted().joined(separator: ", ")))")
    }
}

/// The candidate folders a soup wrote (never a model folder passed as it is), registered with `CleanupRegistry`
/// while they exist, so an interrupted soup leaves none behind.
final class CandidateRegistrations: @unchecked Sendable {
    private let work: URL
    private let lock = NSLock()
    private var tokens: [String: [CleanupRegistry.Token]] = [:]

    init(work: URL) { self.work = work.standardizedFileURL }

    func track(_ folder: URL) -> URL {
        let path = folder.standardizedFileURL.path
        guard path.hasPathPrefix(work.path + "/") else { return folder }
        let t = CleanupRegistry.register(tree: folder)
        lock.lock()
        tokens[path, default: []] += t
        lock.unlock()
        return folder
    }

    /// Removes a candidate folder this soup wrote, then forgets its registrations.
    func remove(_ folder: URL) {
        try? FileManager.default.removeItem(at: folder)
        let path = folder.standardizedFileURL.path
        lock.lock()
        let t = tokens.removeValue(forKey: path) ?? []
        lock.unlock()
        for token in t { CleanupRegistry.unregister(token) }
    }

    func removeAll() {
        lock.lock()
        let paths = Array(tokens.keys)
        lock.unlock()
        for p in paths { remove(URL(fileURLWithPath: p)) }
    }
}
