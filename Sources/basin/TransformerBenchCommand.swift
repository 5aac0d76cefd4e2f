import ArgumentParser
import BasinFusion
import BasinNet
import BasinTensor
import BasinIO
import Foundation

struct TransformerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transformer",
        abstract: "Forward tokens/s of a GPT-2-small-shaped network (12 layers, 768 wide, 12 heads, sequence 128, batch 8, random float32 weights), plainly and through the path evaluator.")

    @OptionGroup var options: BenchOptions

    @Option(help: "Layers.") var layers: Int = 12
    @Option(help: "Model width.") var width: Int = 768
    @Option(help: "Attention heads.") var heads: Int = 12
    @Option(help: "Vocabulary size.") var vocabulary: Int = 50257
    @Option(help: "Sequence length.") var sequence: Int = 128
    @Option(help: "Sequences per batch.") var batch: Int = 8
    @Option(help: "Forward passes timed (the best is reported).") var repeats: Int = 3
    @Option(help: "Points of the linear path evaluated.") var points: Int = 5

    func validate() throws {
        try Check.range(layers, 1...1024, "--layers")
        try Check.range(width, 1...65536, "--width")
        try Check.range(heads, 1...width, "--heads")
        // Token ids travel as float32, which holds every integer only up to 2^24.
        try Check.range(vocabulary, 1...(1 << 24), "--vocabulary")
        try Check.range(sequence, 1...65536, "--sequence")
        try Check.range(batch, 1...Check.maxBatch, "--batch")
        try Check.range(repeats, 1...1000, "--repeats")
        try Check.range(points, 2...1001, "--points")
        if width % heads != 0 { throw ValidationError("--heads \(heads) must divide --width \(width)") }
    }

    /// Float32 bytes the run holds at its peak: two models and the interpolated one (parameters ~ 12 d^2 per layer
    /// plus the embeddings), and the forward pass's activations (per token: the logits, ~16 d per layer, and the
    /// attention scores of every head).
    static func memoryEstimate(layers: Int, width: Int, heads: Int, vocabulary: Int, sequence: Int, batch: Int) -> Int {
        let m = MemoryBudget.self
        let parameters = m.sum([m.product(layers, 12, width, width), m.product(vocabulary, width), m.product(max(sequence, 1024), width)])
        let perToken = m.sum([vocabulary, m.product(layers, 16, width), m.product(heads, sequence)])
        return m.sum([m.product(parameters, 3, 4), m.product(batch, sequence, perToken, 4)])
    }

    func run() throws {
        options.apply()
        try MemoryBudget.check(Self.memoryEstimate(layers: layers, width: width, heads: heads, vocabulary: vocabulary, sequence: sequence, batch: batch),
                               for: "bench transformer with these sizes")
        let config = TransformerBenchmark.gpt2Small(layers: layers, width: width, heads: heads, vocabulary: vocabulary, positions: max(sequence, 1024))
        let f = try TransformerBenchmark.run(config: config, sequence: sequence, batch: batch, repeats: repeats, pathPoints: points)
        if options.json { return try printJSON(f) }
        print("OpenBLAS threads: \(BLAS.threads)")
        print(String(format: "GPT-2 shape: %d layers, %d wide, %d heads, vocabulary %d, %.1fM parameters (float32)",
                     f.layers, f.width, f.heads, f.vocabulary, Double(f.parameters) / 1e6))
        print(String(format: "forward, batch %d x sequence %d: %.1f ms, %.0f tokens/s, %.1f GFLOP/s",
                     f.batch, f.sequence, f.forwardSeconds * 1e3, f.forwardTokensPerSecond, f.forwardGflops))
        print(String(format: "path evaluator, %d points of a linear path (loss on the batch at each): %.1f ms (setup %.1f ms), %.0f tokens/s",
                     f.pathPoints, f.pathSeconds * 1e3, f.pathSetupSeconds * 1e3, f.pathTokensPerSecond))
    }
}
