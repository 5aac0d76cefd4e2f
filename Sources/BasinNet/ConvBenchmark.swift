import BasinTensor
import Foundation

/// `basin bench conv`: forward throughput of a ResNet-20 in the CIFAR layout.
public enum ConvBenchmark {
    /// ResNet-20 for 3x32x32 images (He et al. 2016, section 4.2): a 3x3 conv to 16 channels, three stages of
    /// three BasicBlocks (16, 32, 64 channels; 32x32, 16x16, 8x8), global average pool, a linear layer to 10
    /// classes; every conv without bias and followed by BatchNorm. Where a stage halves the resolution the
    /// shortcut is a 1x1 stride-2 conv + BatchNorm (torchvision's BasicBlock; the paper's option A pads zeros).
    public static func resnet20(widths: [Int] = [16, 32, 64], blocks: Int = 3, classes: Int = 10) -> Architecture {
        var nodes: [Node] = []
        func add<O: Op>(_ name: String, _ op: O, _ inputs: [Int]? = nil) -> Int {
            nodes.append(Node(name: name, op: op, inputs: inputs ?? [nodes.count - 1]))
            return nodes.count - 1
        }
        func convBN(_ name: String, out: Int, kernel: Int, stride: Int, input: Int) -> Int {
            let c = add(name, Conv2d(weight: "\(name).weight", outChannels: out, kernel: [kernel, kernel], stride: [stride, stride],
                                     padding: [kernel / 2, kernel / 2]), [input])
            let bnName = name.replacingOccurrences(of: "conv", with: "bn")
            return add(bnName, BatchNorm(module: bnName, numFeatures: out), [c])
        }
        var h = add("relu", ActivationOp(.relu), [convBN("conv1", out: widths[0], kernel: 3, stride: 1, input: -1)])
        var channels = widths[0]
        for (s, width) in widths.enumerated() {
            for b in 0..<blocks {
                let p = "layer\(s + 1).\(b)"
                let stride = s > 0 && b == 0 ? 2 : 1
                let a = add("\(p).relu1", ActivationOp(.relu), [convBN("\(p).conv1", out: width, kernel: 3, stride: stride, input: h)])
                let main = convBN("\(p).conv2", out: width, kernel: 3, stride: 1, input: a)
                var shortcut = h
                if stride != 1 || channels != width {
                    let d = add("\(p).downsample.0", Conv2d(weight: "\(p).downsample.0.weight", outChannels: width, kernel: [1, 1],
                                                            stride: [stride, stride]), [h])
                    shortcut = add("\(p).downsample.1", BatchNorm(module: "\(p).downsample.1", numFeatures: width), [d])
                }
                h = add("\(p).relu2", ActivationOp(.relu), [add("\(p).add", Add(), [main, shortcut])])
                channels = width
            }
        }
        _ = add("pool", GlobalAvgPool(), [h])
        _ = add("fc", Linear(weight: "fc.weight", bias: "fc.bias", outFeatures: classes))
        return Architecture(nodes: nodes, inputShape: [3, 32, 32])
    }

    /// Multiply-adds x 2 of the convolutions and linear layers for one sample (what "FLOPs" of a CNN usually
    /// counts; BatchNorm, activations, pooling and adds are not counted).
    public static func flopsPerSample(_ arch: Architecture, params: ParameterSet) throws -> Double {
        let shapes = try arch.inferShapes(shapeOf: { params[$0]?.shape })
        var flops = 0.0
        for (i, node) in arch.nodes.enumerated() {
            if let conv = node.op as? Conv2d, let w = params[conv.weight], let out = Shapes.known(shapes[i]) {
                flops += 2 * Double(w.count) * Double(out[1] * out[2])
            } else if let linear = node.op as? Linear, let w = params[linear.weight], let out = Shapes.known(shapes[i]) {
                flops += 2 * Double(w.count) * Double(out.dropLast().reduce(1, *))
            }
        }
        return flops
    }

    public struct Figure: Codable, Sendable {
        public var network: String
        public var batch: Int
        public var parameters: Int
        /// Convolution and linear FLOPs per image (2 per multiply-add).
        public var flopsPerImage: Double
        /// Best time of one batch's forward pass (eval mode).
        public var seconds: Double
        public var imagesPerSecond: Double
        public var gflops: Double
    }

    /// Times the forward pass (eval mode, logits) of a batch of random images through a randomly initialised
    /// ResNet-20 (best of `repeats` after a warm-up).
    public static func run(batch: Int = 256, repeats: Int = 3, seed: UInt64 = 1) throws -> Figure {
        let arch = resnet20()
        var g = SeededGenerator(seed: seed)
        var params = try arch.initialParameters(generator: &g)
        // Non-trivial running statistics, so BatchNorm does real work.
        for name in arch.bufferNames where name.hasSuffix("running_mean") || name.hasSuffix("running_var") {
            let t = params[name]!
            params[name] = Tensor(shape: t.shape, storage: (0..<t.count).map { _ in name.hasSuffix("var") ? g.uniform(0.5, 1.5) : g.uniform(-0.1, 0.1) })
        }
        let network = Network(arch)
        let x = Tensor(shape: [batch, 3, 32, 32], storage: (0..<(batch * 3 * 32 * 32)).map { _ in g.uniform(0, 1) })
        let t = Benchmarks.bestTime(repeats: repeats) { _ = network.logits(x, params) }
        let flops = try flopsPerSample(arch, params: params)
        return Figure(network: "ResNet-20 (CIFAR, 3x32x32, widths 16/32/64)", batch: batch, parameters: params.scalarCount,
                      flopsPerImage: flops, seconds: t, imagesPerSecond: Double(batch) / t, gflops: flops * Double(batch) / t / 1e9)
    }
}
