import BasinIO
import Foundation

/// A problem with a Hugging Face `config.json`: a matchable `kind`, the file and the key concerned.
public struct TransformerConfigError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// Not a JSON object.
        case badJSON
        /// `model_type` names a family Basin does not build.
        case unknownModelType
        /// A key the family needs is absent.
        case missingField
        /// A key has the wrong type or an impossible value.
        case badField
        /// A valid setting Basin does not implement (cross-attention, scaled RoPE, ...).
        case unsupportedFeature
    }

    public let kind: Kind
    public let file: String
    public let key: String?
    public let problem: String

    public init(_ kind: Kind, file: String, key: String? = nil, _ problem: String) {
        self.kind = kind
        self.file = file
        self.key = key
        self.problem = problem
    }

    public var description: String {
        if let key { return "\(file): \"\(key)\" \(problem)" }
        return "\(file): \(problem)"
    }

    public var errorDescription: String? { description }
}

/// The two transformer families Basin builds: GPT-2, and LLaMA with the models sharing its layout
/// (Mistral, Qwen2).
public enum TransformerFamily: String, Sendable, Equatable, CaseIterable {
    case gpt2
    case llama
}

/// The MLP activation named by `activation_function` (GPT-2) or `hidden_act` (LLaMA).
public enum TransformerActivation: String, Sendable, Equatable {
    /// Tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast` are the same function to float32).
    case geluNew = "gelu_new"
    /// Exact erf form.
    case gelu
    case relu
    case silu

    static func parse(_ name: String) -> TransformerActivation? {
        switch name {
        case "gelu_new", "gelu_pytorch_tanh", "gelu_fast": .geluNew
        case "gelu": .gelu
        case "relu": .relu
        case "silu", "swish": .silu
        default: nil
        }
    }
}

/// What Basin reads from a Hugging Face `config.json` to build a GPT-2 or LLaMA-family network: the
/// dimensions, the activation, norms, position encoding and whether the output matrix is the embedding.
public struct TransformerConfig: Sendable, Equatable {
    public var family: TransformerFamily
    /// `model_type` as written (gpt2, llama, mistral, qwen2).
    public var modelType: String
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var keyValueHeads: Int
    public var headDim: Int
    public var intermediateSize: Int
    /// Largest sequence the model takes (GPT-2: the learned position table's rows).
    public var maxPositions: Int
    public var activation: TransformerActivation
    public var normEpsilon: Float
    /// The output matrix is the token embedding (no `lm_head.weight`).
    public var tiedEmbeddings: Bool
    /// LLaMA family: RoPE base.
    public var ropeTheta: Double
    /// Biases on q, k, v projections (Qwen2 always; LLaMA with `attention_bias`), on o_proj (LLaMA with
    /// `attention_bias`), on the MLP projections (`mlp_bias`).
    public var qkvBias: Bool
    public var outputProjectionBias: Bool
    public var mlpBias: Bool
    /// Mistral: attention reads only the last `slidingWindow` positions (nil: all).
    public var slidingWindow: Int?
    /// GPT-2: `scale_attn_weights` (divide scores by sqrt(head_dim)) and `scale_attn_by_inverse_layer_idx`.
    public var scaleAttentionWeights: Bool
    public var scaleByInverseLayerIndex: Bool

    public static let supportedModelTypes = ["gpt2", "llama", "mistral", "qwen2"]

    public init(family: TransformerFamily, modelType: String, vocabularySize: Int, hiddenSize: Int, layers: Int, heads: Int,
                keyValueHeads: Int, headDim: Int, intermediateSize: Int, maxPositions: Int, activation: TransformerActivation,
                normEpsilon: Float, tiedEmbeddings: Bool, ropeTheta: Double = 10000, qkvBias: Bool = false,
                outputProjectionBias: Bool = false, mlpBias: Bool = false, slidingWindow: Int? = nil,
                scaleAttentionWeights: Bool = true, scaleByInverseLayerIndex: Bool = false) {
        self.family = family
        self.modelType = modelType
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.heads = heads
        self.keyValueHeads = keyValueHeads
        self.headDim = headDim
        self.intermediateSize = intermediateSize
        self.maxPositions = maxPositions
        self.activation = activation
        self.normEpsilon = normEpsilon
        self.tiedEmbeddings = tiedEmbeddings
        self.ropeTheta = ropeTheta
        self.qkvBias = qkvBias
        self.outputProjectionBias = outputProjectionBias
        self.mlpBias = mlpBias
        self.slidingWindow = slidingWindow
        self.scaleAttentionWeights = scaleAttentionWeights
        self.scaleByInverseLayerIndex = scaleByInverseLayerIndex
    }

    /// Reads `config.json` bytes; `file` names it in errors.
    public init(data: Data, file: String) throws {
        guard let object = try? JSONSerialization.jsonObject(with: data), let dict = object as? [String: Any] else {
            throw TransformerConfigError(.badJSON, file: file, "is not a JSON object")
        }
        try self.init(dictionary: dict, file: file)
    }

    public init(url: URL) throws {
        let data: Data
        // FileCheck.read refuses FIFOs, devices and oversized files (a BasinIOError naming the file, kept as
        // it is); a file that cannot be read at all is this reader's badJSON, as before.
        do { data = try FileCheck.read(url) } catch let e as BasinIOError where e.kind == .unreadable {
            throw TransformerConfigError(.badJSON, file: url.path, e.problem)
        }
        try self.init(data: data, file: url.path)
    }

    /// Reads a parsed `config.json`.
    public init(dictionary c: [String: Any], file: String) throws {
        let reader = ConfigReader(dict: c, file: file)
        guard c["model_type"] != nil else {
            throw TransformerConfigError(.missingField, file: file, key: "model_type",
                                         "is missing; Basin builds \(Self.supportedModelTypes.joined(separator: ", ")) models from config.json")
        }
        let modelType = try reader.string("model_type")
        switch modelType {
        case "gpt2":
            try self.init(gpt2: reader)
        case "llama", "mistral", "qwen2":
            try self.init(llama: reader, modelType: modelType)
        default:
            throw TransformerConfigError(.unknownModelType, file: file, key: "model_type",
                                         "is \"\(modelType)\"; Basin builds \(Self.supportedModelTypes.joined(separator: ", ")) models")
        }
        try validate(file: file)
    }

    private init(gpt2 r: ConfigReader) throws {
        if try r.optionalBool("add_cross_attention") == true {
            throw TransformerConfigError(.unsupportedFeature, file: r.file, key: "add_cross_attention",
                                         "is true; Basin builds decoder-only GPT-2 models (no cross-attention)")
        }
        let width = try r.int("n_embd")
        let heads = try r.int("n_head")
        let actName = try r.optionalString("activation_function") ?? "gelu_new"
        guard let activation = TransformerActivation.parse(actName) else {
            throw TransformerConfigError(.unsupportedFeature, file: r.file, key: "activation_function",
                                         "is \"\(actName)\"; Basin implements gelu_new, gelu_pytorch_tanh, gelu, relu, silu")
        }
        guard heads > 0, width % heads == 0 else {
            throw TransformerConfigError(.badField, file: r.file, key: "n_head", "is \(heads), which does not divide n_embd \(width)")
        }
        self.init(family: .gpt2, modelType: "gpt2", vocabularySize: try r.int("vocab_size"), hiddenSize: width,
                  layers: try r.int("n_layer"), heads: heads, keyValueHeads: heads, headDim: width / heads,
                  intermediateSize: try r.optionalInt("n_inner") ?? 4 * width,
                  maxPositions: try r.int("n_positions"), activation: activation,
                  normEpsilon: Float(try r.optionalDouble("layer_norm_epsilon") ?? 1e-5),
                  tiedEmbeddings: try r.optionalBool("tie_word_embeddings") ?? true,
                  qkvBias: true, outputProjectionBias: true, mlpBias: true,
                  scaleAttentionWeights: try r.optionalBool("scale_attn_weights") ?? true,
                  scaleByInverseLayerIndex: try r.optionalBool("scale_attn_by_inverse_layer_idx") ?? false)
    }

    private init(llama r: ConfigReader, modelType: String) throws {
        let width = try r.int("hidden_size")
        let heads = try r.int("num_attention_heads")
        let kvHeads = try r.optionalInt("num_key_value_heads") ?? heads
        guard heads > 0 else { throw TransformerConfigError(.badField, file: r.file, key: "num_attention_heads", "must be positive") }
        let headDim = try r.optionalInt("head_dim") ?? (width / heads)
        let actName = try r.optionalString("hidden_act") ?? "silu"
        guard let activation = TransformerActivation.parse(actName) else {
            throw TransformerConfigError(.unsupportedFeature, file: r.file, key: "hidden_act",
                                         "is \"\(actName)\"; Basin implements silu, gelu, gelu_new, relu")
        }
        // rope_theta: top level (transformers 4.x) or inside rope_parameters (5.x); rope_scaling / rope_type
        // other than the default would change the frequencies.
        var theta = try r.optionalDouble("rope_theta")
        if let params = r.dict["rope_parameters"], !(params is NSNull) {
            guard let p = params as? [String: Any] else {
                throw TransformerConfigError(.badField, file: r.file, key: "rope_parameters", "is not an object")
            }
            let sub = ConfigReader(dict: p, file: r.file, prefix: "rope_parameters.")
            if let t = try sub.optionalDouble("rope_theta") { theta = t }
            if let type = try sub.optionalString("rope_type"), type != "default" {
                throw TransformerConfigError(.unsupportedFeature, file: r.file, key: "rope_parameters.rope_type",
                                             "is \"\(type)\"; Basin implements the default rotary embedding only")
            }
            if let f = try sub.optionalDouble("partial_rotary_factor"), f != 1 {
                throw TransformerConfigError(.unsupportedFeature, file: r.file, key: "rope_parameters.partial_rotary_factor",
                                             "is \(f); Basin rotates whole heads only")
            }
        }
        if let scaling = r.dict["rope_scaling"], !(scaling is NSNull) {
            let type = (scaling as? [String: Any]).flatMap { ($0["rope_type"] ?? $0["type"]) as? String }
            if type != "default" {
                throw TransformerConfigError(.unsupportedFeature, file: r.file, key: "rope_scaling",
                                             "is set (\(type ?? "?")); Basin implements the default rotary embedding only")
            }
        }
        var window: Int?
        if modelType == "mistral" { window = try r.optionalInt("sliding_window") }
        if modelType == "qwen2", try r.optionalBool("use_sliding_window") == true {
            throw TransformerConfigError(.unsupportedFeature, file: r.file, key: "use_sliding_window",
                                         "is true; Basin implements Qwen2 with full attention only")
        }
        let attentionBias = try r.optionalBool("attention_bias") ?? false
        self.init(family: .llama, modelType: modelType, vocabularySize: try r.int("vocab_size"), hiddenSize: width,
                  layers: try r.int("num_hidden_layers"), heads: heads, keyValueHeads: kvHeads, headDim: headDim,
                  intermediateSize: try r.int("intermediate_size"),
                  maxPositions: try r.optionalInt("max_position_embeddings") ?? Int.max, activation: activation,
                  normEpsilon: Float(try r.optionalDouble("rms_norm_eps") ?? 1e-6),
                  tiedEmbeddings: try r.optionalBool("tie_word_embeddings") ?? false,
                  ropeTheta: theta ?? 10000,
                  qkvBias: modelType == "qwen2" ? true : attentionBias,
                  outputProjectionBias: modelType == "qwen2" ? false : attentionBias,
                  mlpBias: modelType == "llama" ? (try r.optionalBool("mlp_bias") ?? false) : false,
                  slidingWindow: window)
    }

    private func validate(file: String) throws {
        let keys: (String, String, String, String, String, String) = family == .gpt2
            ? ("vocab_size", "n_embd", "n_layer", "n_head", "n_head", "n_inner")
            : ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size")
        for (value, key) in [(vocabularySize, keys.0), (hiddenSize, keys.1), (layers, keys.2), (heads, keys.3),
                             (keyValueHeads, keys.4), (intermediateSize, keys.5), (headDim, family == .gpt2 ? keys.3 : "head_dim")] where value <= 0 {
            throw TransformerConfigError(.badField, file: file, key: key, "is \(value); it must be positive")
        }
        // Upper bounds, so a hostile config.json cannot make the graph builder loop for ever or sizes overflow:
        // far beyond any published model, and token ids travel as float32, exact only up to 2^24.
        for (value, key, limit) in [(vocabularySize, keys.0, 1 << 24), (hiddenSize, keys.1, 1 << 20), (layers, keys.2, 10_000),
                                    (heads, keys.3, 1 << 16), (keyValueHeads, keys.4, 1 << 16), (intermediateSize, keys.5, 1 << 22),
                                    (headDim, family == .gpt2 ? keys.3 : "head_dim", 1 << 16)] where value > limit {
            throw TransformerConfigError(.badField, file: file, key: key, "is \(value); Basin builds models with at most \(limit)")
        }
        guard heads % keyValueHeads == 0 else {
            throw TransformerConfigError(.badField, file: file, key: keys.4,
                                         "is \(keyValueHeads), which does not divide \(keys.3) \(heads) (grouped-query attention)")
        }
        if family == .llama, headDim % 2 != 0 {
            throw TransformerConfigError(.badField, file: file, key: "head_dim", "is \(headDim); rotary embedding needs an even head dimension")
        }
        // GPT-2's learned position table has n_positions rows: bounded like the other sizes (a table of 10^14
        // rows trapped in its allocation). LLaMA's max_position_embeddings allocates nothing (RoPE).
        if family == .gpt2, maxPositions > 1 << 24 {
            throw TransformerConfigError(.badField, file: file, key: "n_positions", "is \(maxPositions); Basin builds models with at most \(1 << 24)")
        }
        guard maxPositions > 0 else {
            throw TransformerConfigError(.badField, file: file, key: family == .gpt2 ? "n_positions" : "max_position_embeddings",
                                         "is \(maxPositions); it must be positive")
        }
        if let slidingWindow, slidingWindow <= 0 {
            throw TransformerConfigError(.badField, file: file, key: "sliding_window", "is \(slidingWindow); it must be positive")
        }
        guard ropeTheta > 0, ropeTheta.isFinite else {
            throw TransformerConfigError(.badField, file: file, key: "rope_theta", "is \(ropeTheta); it must be positive")
        }
        guard normEpsilon >= 0, normEpsilon.isFinite else {
            throw TransformerConfigError(.badField, file: file, key: family == .gpt2 ? "layer_norm_epsilon" : "rms_norm_eps",
                                         "is \(normEpsilon); it must be a non-negative number")
        }
    }

    /// The score scale of layer `layer` (0-based): 1/sqrt(head_dim), and for GPT-2 with
    /// `scale_attn_by_inverse_layer_idx` also 1/(layer + 1).
    public func attentionScale(layer: Int) -> Float {
        var s: Float = family == .gpt2 && !scaleAttentionWeights ? 1 : 1 / Float(headDim).squareRoot()
        if family == .gpt2 && scaleByInverseLayerIndex { s /= Float(layer + 1) }
        return s
    }
}

/// Typed reads of config.json values with errors naming the key.
struct ConfigReader {
    let dict: [String: Any]
    let file: String
    var prefix = ""

    private func bad(_ key: String, _ want: String, _ value: Any) -> TransformerConfigError {
        // The JSON type is named: a string "64" printed bare would read like the integer it is not.
        let shown: String
        switch value {
        case let s as String: shown = "\"\(s)\" (a string)"
        case let n as NSNumber where Self.isBoolean(n): shown = n.boolValue ? "true" : "false"
        case is [Any]: shown = "a list"
        case is [String: Any]: shown = "an object"
        default: shown = "\(value)"
        }
        return TransformerConfigError(.badField, file: file, key: prefix + key, "is \(shown); expected \(want)")
    }

    /// JSON true/false: JSONSerialization's boolean NSNumber, whose objCType is "c" (numbers are "q", "d", ...).
    static func isBoolean(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

    private func value(_ key: String) -> Any? {
        guard let v = dict[key], !(v is NSNull) else { return nil }
        return v
    }

    func optionalInt(_ key: String) throws -> Int? {
        guard let v = value(key) else { return nil }
        // JSONSerialization gives NSNumber; a Bool is an NSNumber too, so reject it explicitly.
        guard let n = v as? NSNumber, !Self.isBoolean(n) else { throw bad(key, "an integer", v) }
        let d = n.doubleValue
        guard d.rounded() == d, abs(d) < 1e15 else { throw bad(key, "an integer", v) }
        return Int(d)
    }

    func int(_ key: String) throws -> Int {
        guard let n = try optionalInt(key) else {
            throw TransformerConfigError(.missingField, file: file, key: prefix + key, "is missing")
        }
        return n
    }

    func optionalDouble(_ key: String) throws -> Double? {
        guard let v = value(key) else { return nil }
        guard let n = v as? NSNumber, !Self.isBoolean(n) else { throw bad(key, "a number", v) }
        return n.doubleValue
    }

    func optionalBool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard let n = v as? NSNumber, Self.isBoolean(n) else { throw bad(key, "true or false", v) }
        return n.boolValue
    }

    func optionalString(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v as? String else { throw bad(key, "a string", v) }
        return s
    }

    func string(_ key: String) throws -> String {
        guard let s = try optionalString(key) else {
            throw TransformerConfigError(.missingField, file: file, key: prefix + key, "is missing")
        }
        return s
    }
}
