"""A Streamlit app for the browser tests: a text input and a line that follows it."""

import streamlit as st

st.title("Studios Streamlit check")
name = st.text_input("Your name", value="")
st.write(f"hello, {name or 'nobody'}")
