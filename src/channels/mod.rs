//! Delivery channels: the clients of the providers Herald sends through. A
//! channel is a client, its error taxonomy and its request shape; the delivery
//! pipeline does not change per channel.

pub mod console;
pub mod whatsapp;
