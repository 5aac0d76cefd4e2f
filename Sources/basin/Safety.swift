import ArgumentParser
import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Everything a command reads and writes, checked before any work (docs/reliability.md): every input must be
/// a regular file (a folder where a model folder is meant), and no output may be an input or another output.
struct IOPlan {
    var inputs: [URL] = []
    var outputs: [OutputTarget] = []
    /// Folders the command creates before writing into them.
    var createdFolders: Set<String> = []

    /// A model: a .safetensors file, an index (its shards count as inputs too), or a folder holding one.
    mutating func model(_ path: String?) throws {
        guard let path else { return }
        do {
            try FileCheck.input(path, folderAllowed: true)
        } catch let e as BasinIOError where e.kind == .unreadable {
            return  // missing: the command's own load says where it looked
        }
        let url = URL(fileURLWithPath: path)
        inputs.append(url)
        // A model that opens contributes its files (index + shards); one that does not is reported by the
        // command's own load, with the tensor and what is wrong.
        if let source = try? ModelFile.open(url) { inputs += source.files }
    }

    mutating func models(_ paths: [String]) throws {
        for p in paths { try model(p) }
    }

    /// A file read whole (data set, recipe, architecture, bends, report, theme).
    mutating func file(_ path: String?) throws {
        guard let path else { return }
        try FileCheck.input(path)
        inputs.append(URL(fileURLWithPath: path))
    }

    mutating func files(_ paths: [String]) throws {
        for p in paths { try file(p) }
    }

    /// An output file; its folder must exist unless `folderMayBeMissing` (a folder the command creates).
    mutating func output(_ path: String?, folderMayBeMissing: Bool = false) {
        guard let path else { return }
        let url = URL(fileURLWithPath: path)
        outputs.append(.file(url))
        if folderMayBeMissing { createdFolders.insert(url.deletingLastPathComponent().standardizedFileURL.path) }
    }

    mutating func checkpoint(_ path: String) {
        outputs.append(.checkpoint(URL(fileURLWithPath: path)))
    }

    func check() throws {
        for case let .file(url) in outputs where !createdFolders.contains(url.deletingLastPathComponent().standardizedFileURL.path) {
            try FileCheck.outputFolder(of: url)
        }
        try OutputGuard.check(outputs: outputs, inputs: inputs)
    }
}

/// `--allow-nonfinite`, for commands that write weights.
struct NonFiniteOptions: ParsableArguments {
    @Flag(help: "Write weights holding NaN or infinite values instead of refusing (their inputs are still reported).")
    var allowNonfinite = false

    func apply() { WritePolicy.allowNonFinite = allowNonfinite }
}

/// Prints one warning per tensor holding NaN or infinite values; returns whether there was any.
@discardableResult
func warnNonFinite(_ model: LoadedModel) -> Bool {
    var any = false
    for name in model.params.names {
        guard let t = model.params[name] else { continue }
        let bad = NonFinite.count(t)
        if bad > 0 {
            any = true
            printError(NonFinite.warning(file: model.path, .init(tensor: name, count: bad, elements: t.count)))
        }
    }
    return any
}

/// Refuses to merge or export from models holding non-finite weights unless `--allow-nonfinite`.
func refuseNonFinite(_ found: Bool, _ what: String) throws {
    if found && !WritePolicy.allowNonFinite {
        throw CLIError(.nonFiniteInput, "\(what) hold NaN or infinite weights (listed above); the result would too. Fix the inputs, or pass --allow-nonfinite")
    }
}

/// A failure of the command line itself, with a kind tests can match on.
struct CLIError: Error, CustomStringConvertible, LocalizedError {
    enum Kind: String {
        case invalidValue, incompatibleData, nonFiniteInput, insufficientDisk
    }

    let kind: Kind
    let description: String
    init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }

    var errorDescription: String? { description }
}

/// Range checks for option values, with messages naming the option.
enum Check {
    static func range<T: Comparable>(_ value: T, _ range: ClosedRange<T>, _ option: String) throws {
        guard range.contains(value) else {
            throw ValidationError("\(option) must be between \(range.lowerBound) and \(range.upperBound) (got \(value))")
        }
    }

    static func atLeast<T: Comparable>(_ value: T, _ minimum: T, _ option: String) throws {
        guard value >= minimum else { throw ValidationError("\(option) must be at least \(minimum) (got \(value))") }
    }

    /// A finite float in `range` (NaN and infinities are refused).
    static func finite(_ value: Float, _ range: ClosedRange<Float>, _ option: String, openLower: Bool = false) throws {
        guard value.isFinite else { throw ValidationError("\(option) must be a finite number (got \(value))") }
        guard range.contains(value), !(openLower && value == range.lowerBound) else {
            throw ValidationError("\(option) must be \(openLower ? "above" : "at least") \(range.lowerBound) and at most \(range.upperBound) (got \(value))")
        }
    }

    /// The usual bound for counts that size loops (epochs, steps, sweeps).
    static let maxIterations = 1_000_000
    /// The largest minibatch / evaluation batch.
    static let maxBatch = 1 << 24
    /// The most OpenBLAS threads.
    static let maxThreads = 1024
}

/// Parses "5GB", "500MB", "2GiB", "1000000" into bytes, refusing zero, negatives, non-numbers and sizes
/// that do not fit in an integer.
func parseByteSize(_ s: String, option: String = "size") throws -> Int {
    let t = s.trimmingCharacters(in: .whitespaces).uppercased()
    let units: [(String, Double)] = [("GIB", 1_073_741_824), ("MIB", 1_048_576), ("KIB", 1024), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3),
                                     ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3), ("B", 1)]
    let bad = ValidationError("\(option): cannot read '\(s)' as a size (e.g. 5GB, 500MB, 2GiB or a number of bytes)")
    if let v = Int(t) {
        guard v > 0 else { throw ValidationError("\(option) must be positive (got '\(s)')") }
        return v
    }
    for (suffix, factor) in units where t.hasSuffix(suffix) {
        let number = t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
        guard let v = Double(number), v.isFinite else { throw bad }
        guard v > 0 else { throw ValidationError("\(option) must be positive (got '\(s)')") }
        let bytes = (v * factor).rounded(.down)
        guard bytes >= 1 else { throw ValidationError("\(option) must be at least one byte (got '\(s)')") }
        guard bytes < 9.2e18 else { throw ValidationError("\(option): '\(s)' is too large") }
        return Int(bytes)
    }
    throw bad
}

/// Parses comma-separated layer widths, each positive and at most 1<<24.
func parseWidths(_ s: String, option: String) throws -> [Int] {
    try s.split(separator: ",", omittingEmptySubsequences: false).map { part -> Int in
        let p = part.trimmingCharacters(in: .whitespaces)
        guard let v = Int(p), v > 0 else { throw ValidationError("\(option): '\(p)' is not a positive width") }
        guard v <= 1 << 24 else { throw ValidationError("\(option): width \(v) is larger than \(1 << 24)") }
        return v
    }
}

enum MemoryEstimate {
    /// Training a transformer built from a config.json on sequences of `sequence` tokens, `batch` at a time, in
    /// Float32: parameters (embeddings, the position table, per layer the attention and MLP projections and norms,
    /// an untied output matrix) with their gradients and two AdamW moments, and per token the logits, ~16 d and
    /// the MLP's widths per layer, and every head's attention scores, held with their gradients.
    static func transformerTraining(_ c: TransformerConfig, sequence: Int, batch: Int) -> Int {
        let m = MemoryBudget.self
        let d = c.hiddenSize, qw = m.product(c.heads, c.headDim), kvw = m.product(c.keyValueHeads, c.headDim)
        let perLayer = m.sum([m.product(d, qw), m.product(2, d, kvw), m.product(qw, d),
                              m.product(c.family == .gpt2 ? 2 : 3, d, c.intermediateSize), m.product(4, d)])
        let parameters = m.sum([m.product(c.vocabularySize, d, c.tiedEmbeddings ? 1 : 2),
                                c.family == .gpt2 ? m.product(c.maxPositions, d) : 0, m.product(c.layers, perLayer)])
        let perToken = m.sum([c.vocabularySize, m.product(c.layers, m.sum([m.product(16, d), m.product(3, c.intermediateSize),
                                                                            m.product(c.heads, sequence)]))])
        return m.product(4, m.sum([m.product(parameters, 4), m.product(3, batch, sequence, perToken)]))
    }

    /// Parameters of an MLP with these widths (weights and biases), saturating instead of overflowing.
    static func mlpParameters(_ widths: [Int]) -> Int {
        MemoryBudget.sum(zip(widths, widths.dropFirst()).map { MemoryBudget.sum([MemoryBudget.product($0, $1), $1]) })
    }

    /// Training an MLP: weights, gradients and two optimiser moments, plus a batch's activations and their
    /// gradients at every layer, in Float32.
    static func training(widths: [Int], batch: Int) -> Int {
        let params = mlpParameters(widths)
        let activations = MemoryBudget.product(batch, MemoryBudget.sum(widths), 3)
        return MemoryBudget.product(4, MemoryBudget.sum([MemoryBudget.product(params, 4), activations]))
    }
}
