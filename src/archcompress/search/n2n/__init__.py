"""N2N learning (Ashok et al., ICLR 2018): removal and shrink policies trained by REINFORCE."""
