/// Every op type, listed once. An architecture file's `"op"` is looked up here; adding an op is its file
/// under Ops/ plus one entry in this list.
public enum OpRegistry {
    public static let types: [any Op.Type] = [
        Linear.self,
        ActivationOp.self,
        Flatten.self,
        Add.self,
        Multiply.self,
        Embedding.self,
        PositionEmbedding.self,
        RotaryEmbedding.self,
        LayerNorm.self,
        RMSNorm.self,
        HFConv1D.self,
        CausalAttention.self,
        LMHead.self,
        Conv2d.self,
        MaxPool2d.self,
        AvgPool2d.self,
        GlobalAvgPool.self,
        BatchNorm.self,
        Reshape.self,
        Identity.self,
        Dropout.self,
    ]

    /// Op type by the name an architecture file uses (case-insensitive).
    public static func type(named name: String) -> (any Op.Type)? {
        let key = name.lowercased()
        return types.first { $0.typeNames.contains(key) }
    }

    /// Every op name, for error messages.
    public static var names: [String] { types.flatMap { $0.typeNames } }
}
