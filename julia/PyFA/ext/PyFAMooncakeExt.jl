# PyFA's rules under Mooncake. Mooncake ignores ChainRulesCore rules, so without this extension
# `Flux.gradient(f, AutoMooncake(), m)` would differentiate `weight * x` inside `fa_matmul` (and
# `conv` inside `fa_conv`, the products of a DFAChain) itself: plain backprop, with no error
# (the forum bug again).
#
# `@from_rrule` makes PyFA's own `ChainRulesCore.rrule`s Mooncake rules, for concrete argument
# types only (Mooncake's advice: its conversion of ChainRules tangents handles plain `Array`s of
# IEEE floats, and is tested mostly on Float64; PyFA's tests run it on Float32 and Float64). Every
# other call of these functions under Mooncake (a `CuArray`, a view, mixed element types) hits the
# rule at the bottom, which raises instead of letting Mooncake fall back to backprop.
# `dfa_output` takes any number of hidden outputs, which `@from_rrule` cannot spell: it is
# declared a primitive with Mooncake's `@is_primitive`, and its rule checks the types at run time
# before handing PyFA's rrule to `rrule_wrapper`, which is what `@from_rrule` generates.
#
# Mooncake's conditions, from its docstrings: a `@zero_derivative` function's output, and the
# output of a function whose rrule is imported (`rrule_wrapper`), must alias none of its
# arguments (the output gets a tangent of its own), and must not mutate them. PyFA's functions
# keep to that: the products return new arrays, `dfa_output` a copy of `z`, the checks `nothing`,
# `_conv_dims` a new DenseConvDims, and `feedback_matrix` a new array in every mode, a copy of
# `feedback` or `weight` where its B is one of them (the rules' pullbacks use the aliasing
# `PyFA._feedback_matrix`, which runs only inside the rules, never in differentiated code).
module PyFAMooncakeExt

using Mooncake: Mooncake, @from_rrule, @is_primitive, @zero_derivative, CoDual, MinimalCtx,
                ReverseMode, primal, rrule_wrapper
using PyFA: DenseConvDims, fa_matmul, fa_conv, dfa_matmul, dfa_conv, dfa_output, feedback_matrix,
            _check_input, _check_mode, _conv_dims

# No derivative through them, as ChainRulesCore.@non_differentiable says for Zygote.
@zero_derivative MinimalCtx Tuple{typeof(feedback_matrix), Vararg}
@zero_derivative MinimalCtx Tuple{typeof(_check_input), Vararg}
@zero_derivative MinimalCtx Tuple{typeof(_check_mode), Vararg}
@zero_derivative MinimalCtx Tuple{typeof(_conv_dims), Vararg}

# The FA rules (MinimalCtx: without them Mooncake computes the wrong gradient, not a slower one).
@from_rrule(MinimalCtx,
            Tuple{typeof(fa_matmul), Matrix{T}, VecOrMat{T}, Matrix{T}} where {T<:Union{Float32, Float64}})
@from_rrule(MinimalCtx,
            Tuple{typeof(fa_matmul), Matrix{T}, VecOrMat{T}, Matrix{T}, Symbol} where {T<:Union{Float32, Float64}})
@from_rrule(MinimalCtx,
            Tuple{typeof(fa_conv), Array{T, N}, Array{T, N}, Array{T, N}, DenseConvDims, Symbol} where {T<:Union{Float32, Float64}, N})
@from_rrule(MinimalCtx,
            Tuple{typeof(dfa_matmul), Matrix{T}, VecOrMat{T}} where {T<:Union{Float32, Float64}})
@from_rrule(MinimalCtx,
            Tuple{typeof(dfa_conv), Array{T, N}, Array{T, N}, DenseConvDims} where {T<:Union{Float32, Float64}, N})

# Any other argument types: a clear error, never Mooncake's own derivative (backprop).
@is_primitive MinimalCtx ReverseMode Tuple{typeof(fa_matmul), AbstractMatrix, AbstractVecOrMat, AbstractMatrix}
@is_primitive MinimalCtx ReverseMode Tuple{typeof(fa_matmul), AbstractMatrix, AbstractVecOrMat, AbstractMatrix, Symbol}
@is_primitive MinimalCtx ReverseMode Tuple{typeof(fa_conv), AbstractArray, AbstractArray, AbstractArray, DenseConvDims, Symbol}
@is_primitive MinimalCtx ReverseMode Tuple{typeof(dfa_matmul), AbstractMatrix, AbstractVecOrMat}
@is_primitive MinimalCtx ReverseMode Tuple{typeof(dfa_conv), AbstractArray, AbstractArray, DenseConvDims}
@is_primitive MinimalCtx ReverseMode Tuple{typeof(dfa_output), Vararg}

const FIXED_ARITY = Union{typeof(fa_matmul), typeof(fa_conv), typeof(dfa_matmul), typeof(dfa_conv)}

Mooncake.rrule!!(f::CoDual{<:FIXED_ARITY}, args::CoDual...) = _unsupported(f, args)

function Mooncake.rrule!!(f::CoDual{<:typeof(dfa_output)}, args::CoDual...)
    _plain_arrays(map(primal, args)) || _unsupported(f, args)
    return rrule_wrapper(f, args...)
end

"""Whether every argument is an `Array` (of any dimension: `z` and the hidden outputs of a conv
layer are 4-d) of one element type, Float32 or Float64."""
function _plain_arrays(xs::Tuple)
    T = eltype(first(xs))
    T <: Union{Float32, Float64} || return false
    return all(x -> x isa Array{T}, xs)
end

function _unsupported(f::CoDual, args::Tuple)
    types = join(map(a -> string(typeof(primal(a))), args), ", ")
    throw(ArgumentError(string(
        "PyFA's rules under Mooncake take plain Arrays of one element type, Float32 or Float64; ",
        "got ", primal(f), "(", types, "). Convert them (Array, f32/f64), or differentiate with ",
        "Zygote or Enzyme. (Mooncake's own derivative would be backprop.)")))
end

end # module PyFAMooncakeExt
